import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  guidBytes,
  LINUX_FILESYSTEM_GUID,
  LINUX_SWAP_GUID,
  writeGpt,
  writeMbr,
} from '../testing/partitioned-disk.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import {
  formatGuid,
  type Partition,
  parseGptHeader,
  parseMbr,
  readPartitionTable,
} from './partition-table.ts';

const MiB = 1 << 20;
const readerOf = (disk: Buffer) => async (offset: number, length: number) =>
  Buffer.from(disk.subarray(offset, offset + length));
const table = (disk: Buffer) => readPartitionTable(readerOf(disk), disk.length);

describe('partition tables', () => {
  it('a disk without the boot signature has no table', async () => {
    assert.equal(await table(Buffer.alloc(MiB)), null);
    assert.equal(parseMbr(Buffer.alloc(100)), null);
  });

  it('reads the primary partitions of an MBR, skipping empty slots', async () => {
    const disk = Buffer.alloc(8 * MiB);
    writeMbr(disk, [
      { firstSector: 2048, sectors: 4096, type: 0x83 },
      { firstSector: 0, sectors: 0, type: 0 },
      { firstSector: 6144, sectors: 2048, type: 0x8e },
    ]);
    assert.deepEqual(await table(disk), [
      { number: 1, table: 'mbr', offsetBytes: MiB, sizeBytes: 2 * MiB, typeCode: '83' },
      { number: 3, table: 'mbr', offsetBytes: 3 * MiB, sizeBytes: MiB, typeCode: '8e' },
    ]);
  });

  it('follows the chain of an extended partition to its logical ones, numbered from 5', async () => {
    const disk = Buffer.alloc(16 * MiB);
    writeMbr(disk, [
      { firstSector: 2048, sectors: 2048, type: 0x83 },
      { firstSector: 8192, sectors: 16384, type: 0x05 },
    ]);
    // Each EBR: its logical partition (relative to the EBR), then the next EBR (relative to the extended start).
    writeMbr(
      disk,
      [
        { firstSector: 2048, sectors: 2048, type: 0x83 },
        { firstSector: 6144, sectors: 4096, type: 0x05 },
      ],
      8192,
    );
    writeMbr(disk, [{ firstSector: 2048, sectors: 2048, type: 0x82 }], 8192 + 6144);
    assert.deepEqual(await table(disk), [
      { number: 1, table: 'mbr', offsetBytes: MiB, sizeBytes: MiB, typeCode: '83' },
      { number: 5, table: 'mbr', offsetBytes: 5 * MiB, sizeBytes: MiB, typeCode: '83' },
      { number: 6, table: 'mbr', offsetBytes: 8 * MiB, sizeBytes: MiB, typeCode: '82' },
    ]);
  });

  it('a looping extended chain ends', async () => {
    const disk = Buffer.alloc(8 * MiB);
    writeMbr(disk, [{ firstSector: 2048, sectors: 8192, type: 0x05 }]);
    writeMbr(
      disk,
      [
        { firstSector: 64, sectors: 64, type: 0x83 },
        { firstSector: 0, sectors: 8192, type: 0x05 },
      ],
      2048,
    );
    assert.deepEqual(
      (await table(disk))?.map((p) => p.number),
      [5],
    );
  });

  it('reads a GPT behind its protective MBR, by entry number', async () => {
    const disk = Buffer.alloc(16 * MiB);
    writeGpt(disk, [
      { firstSector: 2048, lastSector: 10239, typeGuid: LINUX_FILESYSTEM_GUID },
      { firstSector: 10240, lastSector: 20479, typeGuid: LINUX_SWAP_GUID },
    ]);
    assert.deepEqual(await table(disk), [
      { number: 1, table: 'gpt', offsetBytes: MiB, sizeBytes: 4 * MiB, typeCode: LINUX_FILESYSTEM_GUID },
      { number: 2, table: 'gpt', offsetBytes: 5 * MiB, sizeBytes: 5 * MiB, typeCode: LINUX_SWAP_GUID },
    ]);
  });

  it('a GPT whose checksum is wrong is not believed: the protective MBR is what is left', async () => {
    const disk = Buffer.alloc(4 * MiB);
    writeGpt(disk, [{ firstSector: 2048, lastSector: 4095, typeGuid: LINUX_FILESYSTEM_GUID }]);
    disk.writeUInt8(disk.readUInt8(512 + 40) ^ 0xff, 512 + 40);
    assert.equal(parseGptHeader(disk.subarray(512, 1024)), null);
    assert.deepEqual(
      (await table(disk))?.map((p) => [p.table, p.typeCode]),
      [['mbr', 'ee']],
    );
  });

  it('partitions past the end of the disk are cut at it', async () => {
    const disk = Buffer.alloc(2 * MiB);
    writeMbr(disk, [
      { firstSector: 2048, sectors: 1 << 20, type: 0x83 },
      { firstSector: 1 << 20, sectors: 2048, type: 0x83 },
    ]);
    assert.deepEqual(
      (await table(disk))?.map((p) => [p.offsetBytes, p.sizeBytes]),
      [[MiB, MiB]],
    );
  });

  it('GUIDs read back as written', () => {
    for (const guid of [LINUX_FILESYSTEM_GUID, LINUX_SWAP_GUID, 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b']) {
      assert.equal(formatGuid(guidBytes(guid)), guid);
    }
  });

  it('property: random GPT and MBR layouts read back as written', async () => {
    const rnd = new SeededRandom(15);
    for (let round = 0; round < 200; round++) {
      const sectors = 4096;
      const disk = Buffer.alloc(sectors * 512);
      const gpt = rnd.next() < 0.5;
      const count = rnd.int(1, gpt ? 12 : 4);
      const expected: Partition[] = [];
      let next = gpt ? 34 : 1;
      const layout: Array<{ first: number; size: number }> = [];
      for (let i = 0; i < count; i++) {
        const first = next + rnd.int(0, 50);
        const size = rnd.int(1, 500);
        if (first + size >= sectors - 34) break;
        layout.push({ first, size });
        next = first + size;
      }
      if (gpt) {
        writeGpt(
          disk,
          layout.map((l) => ({
            firstSector: l.first,
            lastSector: l.first + l.size - 1,
            typeGuid: LINUX_FILESYSTEM_GUID,
          })),
        );
      } else {
        writeMbr(
          disk,
          layout.map((l) => ({ firstSector: l.first, sectors: l.size, type: 0x83 })),
        );
      }
      for (const [i, l] of layout.entries()) {
        expected.push({
          number: i + 1,
          table: gpt ? 'gpt' : 'mbr',
          offsetBytes: l.first * 512,
          sizeBytes: l.size * 512,
          typeCode: gpt ? LINUX_FILESYSTEM_GUID : '83',
        });
      }
      assert.deepEqual(await table(disk), layout.length === 0 && !gpt ? [] : expected, `round ${round}`);
    }
  });
});
