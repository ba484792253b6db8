import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packageDepends } from './debian-packages.ts';

describe('Debian package dependencies', () => {
  it('keeps the library packages of Depends and Pre-Depends, first alternatives only', () => {
    const stanza = [
      'Package: mdadm',
      'Version: 4.2-5',
      'Pre-Depends: init-system-helpers (>= 1.54~)',
      'Depends: debconf (>= 0.5) | debconf-2.0, libc6 (>= 2.34), libudev1 (>= 183), libfoo1:any | libbar2, udev',
      'Description: tool',
    ].join('\n');
    assert.deepEqual(packageDepends(stanza), ['libc6', 'libudev1', 'libfoo1']);
    assert.deepEqual(packageDepends('Package: x\nVersion: 1\n'), []);
  });
});
