/**
 * A QEMU guest (TCG, busybox initramfs from src/guest) with its data disk
 * attached through the disk service over a Unix socket: its writes and
 * flushes land in the journal, and the journal rebuilds the disk.
 * Debian: qemu-system-x86, e2fsprogs (and what src/guest needs).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  bootGuest,
  buildGuestImage,
  checkDataDisk,
  formatDataDisk,
  type GuestImage,
} from '../guest/index.ts';
import { readJournal, replay } from '../testing/disk-service.fixture.ts';
import { DiskService } from './disk-service.ts';

// The guest boots in about 4 s on a calm machine, much slower on a loaded one.
const WAIT_MS = 120_000;

let root: string;
let image: GuestImage;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'haven-disk-guest-'));
  image = await buildGuestImage();
});
after(() => rm(root, { recursive: true, force: true }));

test('a QEMU guest runs on a journaled disk: its writes and flushes are in the journal', async () => {
  const disk = join(root, 'data.img');
  await formatDataDisk(disk, { sizeBytes: 64 * 1024 * 1024 });
  const base = await readFile(disk);
  const journalDir = join(root, 'data.journal');
  const service = await DiskService.start({ socket: join(root, 'nbd.sock') });
  try {
    const { uri } = await service.attach('data', { imagePath: disk, journalDir });
    assert.equal(service.journalStatus('data').nextSeq, 1);
    const started = Date.now();
    const guest = bootGuest({
      ...image,
      guest: { rate: 20, batch: 2 },
      qemuArgs: ['-drive', `file=${uri},format=raw,if=virtio,cache=none`],
    });
    try {
      await guest.waitForLine(/^recovered 0 ok$/, WAIT_MS);
      console.log(`guest: /data mounted ${Date.now() - started} ms after spawn`);
      await guest.waitForLine(/^durable (1[0-9]|[2-9]\d)$/, WAIT_MS);
    } finally {
      // Power off without warning: what is journaled must still rebuild the disk.
      guest.kill();
      await guest.exited;
    }
    const durable = guest.lines().filter((l) => /^durable \d+$/.test(l)).length;
    assert.ok(service.journalStatus('data').lastWriteAt !== null);

    await service.backend('data').flush();
    const records = await readJournal(journalDir);
    const writes = records.filter((r) => r.kind === 'write').length;
    const flushes = records.filter((r) => r.kind === 'flush').length;
    // Every "durable" line follows an fsync, which reaches us as a FLUSH.
    assert.ok(writes > durable, `${writes} writes journaled for ${durable} durable batches`);
    assert.ok(flushes >= durable, `${flushes} flushes journaled for ${durable} durable batches`);
    console.log(`guest: ${durable} durable batches, ${writes} writes and ${flushes} flushes journaled`);
    assert.ok(replay(base, records).equals(await readFile(disk)), 'the journal replays to the disk');
  } finally {
    await service.close();
  }
  const check = await checkDataDisk(disk);
  assert.equal(check.clean, true, check.output);
});
