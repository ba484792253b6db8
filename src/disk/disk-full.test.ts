/**
 * Full file systems under the disk service, with real tmpfs mounts and
 * qemu-io as the NBD client: the journal's file system filling up switches
 * to the dirty bitmap (no write fails), and a write the image's file system
 * refuses is never left in the journal for the sender to ship.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createSparseImage } from '../storage/sparse-image.ts';
import { replay } from '../testing/disk-service.fixture.ts';
import { run, scratchDir } from '../testing/nbd-test-fixture.ts';
import { tmpfsUnavailable, withTmpfs } from '../testing/tmpfs.fixture.ts';
import { DiskService } from './disk-service.ts';
import type { JournalRecord } from './journal-record.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const skip = tmpfsUnavailable() ?? false;

/** A distinct, non-zero pattern byte per write. */
const pattern = (i: number) => ((i * 37 + 11) % 255) + 1;

async function records(service: DiskService, name: string): Promise<JournalRecord[]> {
  const out: JournalRecord[] = [];
  for await (const r of service.journal(name).records()) out.push(r);
  return out;
}

describe('disk service on full file systems', { skip }, () => {
  test('the journal file system filling up switches to the dirty bitmap; every acknowledged write reads back', async () => {
    const scratch = await scratchDir('disk-full-journal');
    try {
      await withTmpfs(2 * MiB, async (journalFs) => {
        const log: string[] = [];
        const socket = join(scratch.path, 'nbd.sock');
        const imagePath = join(scratch.path, 'disk.img');
        const journalDir = join(journalFs, 'journal');
        await createSparseImage(imagePath, 8 * MiB);
        const attach = async (service: DiskService) =>
          service.attach('disk', { imagePath, journalDir, journalCapacityBytes: 64 * MiB });
        let service = await DiskService.start({ socket, log: (line) => log.push(line) });
        try {
          const { uri } = await attach(service);
          // 48 writes of 64 KiB: 3 MiB into a 2 MiB file system, well under the journal's 64 MiB capacity.
          const writes = Array.from({ length: 48 }, (_, i) => ({ at: i * 128 * KiB, byte: pattern(i) }));
          const args = ['-f', 'raw', uri];
          for (const w of writes) args.push('-c', `write -P ${w.byte} ${w.at} 64k`);
          args.push('-c', 'flush', '-c', `write -P 0x5a ${7 * MiB} 4k`, '-c', 'flush');
          const wrote = await run('qemu-io', args, { cwd: scratch.path, timeoutMs: 60_000 });
          assert.equal(wrote.code, 0, wrote.stderr + wrote.stdout);
          assert.doesNotMatch(
            wrote.stdout + wrote.stderr,
            /failed|error/i,
            'every write and flush succeeded',
          );

          const status = service.journalStatus('disk');
          assert.equal(status.mode, 'bitmap');
          assert.equal(status.resyncRequired, true);
          assert.equal(status.overflowReason, 'filesystem-full');
          assert.ok(status.dirtyRegions > 0);
          assert.ok(
            log.some((line) => /file system is full/.test(line) && line.includes(journalDir)),
            `the switch is logged: ${log.join('\n')}`,
          );

          // What the journal holds plus the dirty regions covers every byte the image changed.
          const journaled = replay(Buffer.alloc(8 * MiB), await records(service, 'disk'));
          const image = await readFile(imagePath);
          const dirty = service.dirtyRegions('disk');
          for (const w of writes) {
            const slice = image.subarray(w.at, w.at + 64 * KiB);
            assert.ok(slice.equals(Buffer.alloc(64 * KiB, w.byte)), `write at ${w.at} is in the image`);
            const covered = dirty.some((r) => r.offset <= w.at && w.at + 64 * KiB <= r.offset + r.length);
            assert.ok(
              covered || journaled.subarray(w.at, w.at + 64 * KiB).equals(slice),
              `write at ${w.at} is journaled or its region is dirty`,
            );
          }

          // Restarted on the still-full file system: bitmap mode is remembered and clients read it all back.
          await service.close();
          service = await DiskService.start({ socket, log: (line) => log.push(line) });
          await attach(service);
          assert.equal(service.journalStatus('disk').mode, 'bitmap');
          assert.equal(service.journalStatus('disk').overflowReason, 'filesystem-full');
          const readArgs = ['-f', 'raw', uri];
          for (const w of writes) readArgs.push('-c', `read -P ${w.byte} ${w.at} 64k`);
          readArgs.push('-c', `read -P 0x5a ${7 * MiB} 4k`);
          const read = await run('qemu-io', readArgs, { cwd: scratch.path, timeoutMs: 60_000 });
          assert.equal(read.code, 0, read.stderr);
          assert.doesNotMatch(read.stdout + read.stderr, /failed|error/i);
        } finally {
          await service.close();
        }
      });
    } finally {
      await scratch.remove();
    }
  });

  test('a write the image file system refuses gets ENOSPC and never reaches the records the sender ships', async () => {
    const scratch = await scratchDir('disk-full-image');
    try {
      await withTmpfs(1 * MiB, async (imageFs) => {
        const socket = join(scratch.path, 'nbd.sock');
        const imagePath = join(imageFs, 'disk.img');
        // A sparse image larger than its file system: the host ran out of room under the guest.
        await createSparseImage(imagePath, 4 * MiB);
        const service = await DiskService.start({ socket, log: () => {} });
        try {
          const { uri } = await service.attach('disk', {
            imagePath,
            journalDir: join(scratch.path, 'journal'),
          });
          const outcomes: Array<{ at: number; byte: number; ok: boolean }> = [];
          for (let i = 0; i < 8; i++) {
            const at = i * 384 * KiB;
            const r = await run('qemu-io', ['-f', 'raw', uri, '-c', `write -P ${pattern(i)} ${at} 256k`], {
              cwd: scratch.path,
            });
            const failed = /write failed/.test(r.stdout + r.stderr);
            if (failed) assert.match(r.stdout + r.stderr, /No space left on device/);
            outcomes.push({ at, byte: pattern(i), ok: !failed });
          }
          assert.ok(outcomes.some((o) => o.ok) && outcomes.some((o) => !o.ok), JSON.stringify(outcomes));
          await service.backend('disk').flush();

          const image = await readFile(imagePath);
          for (const o of outcomes.filter((x) => x.ok)) {
            assert.ok(
              image.subarray(o.at, o.at + 256 * KiB).equals(Buffer.alloc(256 * KiB, o.byte)),
              `acknowledged write at ${o.at} reads back`,
            );
          }
          // The sender ships exactly these records: rebuilt from them, the replica is the image.
          const shipped = await records(service, 'disk');
          assert.ok(
            replay(Buffer.alloc(4 * MiB), shipped).equals(image),
            'the records to ship rebuild exactly what the image stored',
          );
          for (const o of outcomes.filter((x) => !x.ok)) {
            const record = shipped.find((r) => r.kind === 'write' && r.offset === o.at);
            assert.ok(
              !record?.data?.equals(Buffer.alloc(256 * KiB, o.byte)),
              `the failed write at ${o.at} is not shipped as written`,
            );
          }
          assert.equal(service.journalStatus('disk').mode, 'journal');
        } finally {
          await service.close().catch(() => {});
        }
      });
    } finally {
      await scratch.remove();
    }
  });
});
