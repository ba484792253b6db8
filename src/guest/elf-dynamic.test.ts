import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { isStaticElf, readElfDynamic } from './elf-dynamic.ts';

describe('ELF dynamic section reader', () => {
  it('tells a static busybox from a dynamically linked binary', async () => {
    assert.equal(isStaticElf(await readFile('/bin/busybox')), true);
    assert.equal(isStaticElf(await readFile(process.execPath)), false);
    assert.equal(isStaticElf(Buffer.from('#!/bin/sh\n')), false);
  });

  it('reads the loader and the needed libraries, as readelf -d shows them', async () => {
    const node = readElfDynamic(await readFile(process.execPath));
    assert.equal(node.interpreter, '/lib64/ld-linux-x86-64.so.2');
    assert.ok(node.needed.includes('libc.so.6'), node.needed.join(' '));
    // A shared library has needed entries and no loader of its own.
    const libm = readElfDynamic(await readFile('/lib/x86_64-linux-gnu/libm.so.6'));
    assert.equal(libm.interpreter, undefined);
    assert.ok(libm.needed.includes('libc.so.6'), libm.needed.join(' '));
    assert.deepEqual(readElfDynamic(await readFile('/bin/busybox')).needed, []);
    assert.throws(() => readElfDynamic(Buffer.from('#!/bin/sh\n')), /not a 64-bit little-endian ELF/);
  });
});
