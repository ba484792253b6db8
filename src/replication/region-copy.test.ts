import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fakeLink, fakeSource } from '../testing/sender-link.fixture.ts';
import { copyRegions, isZero } from './region-copy.ts';
import { newSyncReport } from './sync-report.ts';
import { CompressionProbe, FrameType, parseSyncDataPayload } from './wire-protocol.ts';

test('zero detection looks at every byte', () => {
  assert.equal(isZero(Buffer.alloc(200_000)), true);
  const late = Buffer.alloc(200_000);
  late[199_999] = 1;
  assert.equal(isZero(late), false);
  assert.equal(isZero(Buffer.alloc(0)), true);
});

test('regions go out as data chunks, zero blocks and zero ranges', async () => {
  const image = Buffer.alloc(64 << 10);
  image.fill(7, 0, 8 << 10);
  // 8..16 KiB: data that happens to read as zeroes; 16..48 KiB: a zero extent; the rest data.
  image.fill(9, 48 << 10);
  const source = fakeSource(image, { zeroRanges: [{ offset: 16 << 10, length: 32 << 10, flags: 0 }] });
  const { link, frames } = fakeLink(source.journal);
  const report = newSyncReport('full', image.length);
  const progress: number[] = [];
  await copyRegions([{ offset: 0, length: image.length }], {
    link,
    source,
    diskKey: 'm/d',
    chunkBytes: 8 << 10,
    probe: new CompressionProbe(null),
    report,
    onProgress: (f) => progress.push(f),
  });
  assert.ok(frames.every((f) => f.type === FrameType.SYNC_DATA));
  const ranges = await Promise.all(frames.map((f) => parseSyncDataPayload(f.payload)));
  assert.deepEqual(
    ranges.map((r) => [r.offset >> 10, r.length >> 10, r.data === null ? 'zero' : r.data[0]]),
    [
      [0, 8, 7],
      [8, 8, 'zero'],
      [16, 32, 'zero'],
      [48, 8, 9],
      [56, 8, 9],
    ],
  );
  assert.equal(report.regionBytes, 64 << 10);
  assert.equal(report.dataBytes, 24 << 10);
  assert.equal(progress.at(-1), 1);
  assert.equal(link.window.isEmpty, false);
});

test('scattered small regions go out in order, frames that are ready sharing a write', async () => {
  const block = 4 << 10;
  const image = Buffer.alloc(256 * 2 * block);
  const regions = Array.from({ length: 256 }, (_, i) => ({ offset: i * 2 * block, length: block }));
  for (const [i, r] of regions.entries()) image.fill((i % 250) + 1, r.offset, r.offset + r.length);
  const source = fakeSource(image);
  const { link, frames } = fakeLink(source.journal);
  let writes = 0;
  const send = link.conn.send.bind(link.conn);
  link.conn.send = async (parts: Buffer[]) => {
    writes++;
    await send(parts);
  };
  await copyRegions(regions, {
    link,
    source,
    diskKey: 'm/d',
    chunkBytes: 1 << 20,
    probe: new CompressionProbe(null),
    report: newSyncReport('bitmap', image.length),
    onProgress: () => {},
  });
  const ranges = await Promise.all(frames.map((f) => parseSyncDataPayload(f.payload)));
  assert.deepEqual(
    ranges.map((r) => [r.offset, r.length, r.data?.[0]]),
    regions.map((r, i) => [r.offset, r.length, (i % 250) + 1]),
  );
  assert.ok(writes < frames.length / 4, `${writes} writes for ${frames.length} frames`);
});
