/**
 * Partition tables of a disk, read from its bytes: MBR (primary and the
 * logical partitions of an extended one) and GPT. Sectors are 512 bytes,
 * what the virtual disks Haven replicates present.
 */
import { crc32 } from 'node:zlib';

export const SECTOR_BYTES = 512;

export type PartitionTableType = 'mbr' | 'gpt';

export interface Partition {
  /** As the guest numbers it: MBR 1-4 primary, 5.. logical; GPT 1.. by entry. */
  number: number;
  table: PartitionTableType;
  offsetBytes: number;
  sizeBytes: number;
  /** MBR: the type byte as two hex digits ('83'); GPT: the type GUID. */
  typeCode: string;
}

/** Reads `length` bytes of the disk at `offset` (short at its end). */
export type ReadDisk = (offset: number, length: number) => Promise<Buffer>;

export interface MbrEntry {
  /** 1-4. */
  slot: number;
  /** The boot flag (0x80): the partition an MBR's boot code loads. */
  active: boolean;
  type: number;
  firstSector: number;
  sectors: number;
}

/** MBR types of an extended partition, whose logical partitions follow in a chain. */
const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
const GPT_PROTECTIVE = 0xee;
/** Logical partitions followed at most: a looping chain of a damaged table ends here. */
const MAX_LOGICAL = 128;
const GPT_SIGNATURE = 'EFI PART';

/** The used entries of an MBR sector (also an extended boot record), or null when it has no boot signature. */
export function parseMbr(sector: Buffer): MbrEntry[] | null {
  if (sector.length < SECTOR_BYTES || sector[510] !== 0x55 || sector[511] !== 0xaa) return null;
  const entries: MbrEntry[] = [];
  for (let slot = 1; slot <= 4; slot++) {
    const at = 446 + (slot - 1) * 16;
    const type = sector[at + 4]!;
    const firstSector = sector.readUInt32LE(at + 8);
    const sectors = sector.readUInt32LE(at + 12);
    if (type === 0 || sectors === 0) continue;
    entries.push({ slot, active: sector[at] === 0x80, type, firstSector, sectors });
  }
  return entries;
}

export interface MbrPartition {
  firstSector: number;
  sectors: number;
  /** The type byte: 0x83 Linux, 0x8e LVM, 0x82 swap, 0x05 extended... */
  type: number;
  /** Sets the boot flag. */
  active?: boolean;
}

/**
 * Writes a boot sector's partition entries (slots 1.. in order) and its 55 AA
 * signature at `sector`, as fdisk does; the boot code before them is left as it is.
 */
export function writeMbr(disk: Buffer, partitions: readonly MbrPartition[], sector = 0): void {
  const at = sector * SECTOR_BYTES;
  disk.fill(0, at + 446, at + 510);
  for (const [i, p] of partitions.entries()) {
    const entry = at + 446 + i * 16;
    disk[entry] = p.active ? 0x80 : 0;
    disk[entry + 4] = p.type;
    disk.writeUInt32LE(p.firstSector, entry + 8);
    disk.writeUInt32LE(p.sectors, entry + 12);
  }
  disk[at + 510] = 0x55;
  disk[at + 511] = 0xaa;
}

export interface GptHeader {
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

/** The GPT header in LBA 1, or null when it is missing or its checksum is wrong. */
export function parseGptHeader(sector: Buffer): GptHeader | null {
  if (sector.length < 92 || sector.toString('latin1', 0, 8) !== GPT_SIGNATURE) return null;
  const headerSize = sector.readUInt32LE(12);
  if (headerSize < 92 || headerSize > sector.length) return null;
  const copy = Buffer.from(sector.subarray(0, headerSize));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== sector.readUInt32LE(16)) return null;
  const entrySize = sector.readUInt32LE(84);
  const entryCount = sector.readUInt32LE(80);
  if (entrySize < 128 || entrySize % 8 !== 0 || entryCount > 1024) return null;
  return {
    entriesLba: Number(sector.readBigUInt64LE(72)),
    entryCount,
    entrySize,
    entriesCrc: sector.readUInt32LE(88),
  };
}

/** The used entries of a GPT partition array, or null when its checksum is wrong. */
export function parseGptEntries(entries: Buffer, header: GptHeader): Partition[] | null {
  const bytes = header.entryCount * header.entrySize;
  if (entries.length < bytes || crc32(entries.subarray(0, bytes)) !== header.entriesCrc) return null;
  const partitions: Partition[] = [];
  for (let i = 0; i < header.entryCount; i++) {
    const entry = entries.subarray(i * header.entrySize, (i + 1) * header.entrySize);
    if (entry.subarray(0, 16).every((b) => b === 0)) continue;
    const first = Number(entry.readBigUInt64LE(32));
    const last = Number(entry.readBigUInt64LE(40));
    if (last < first) continue;
    partitions.push({
      number: i + 1,
      table: 'gpt',
      offsetBytes: first * SECTOR_BYTES,
      sizeBytes: (last - first + 1) * SECTOR_BYTES,
      typeCode: formatGuid(entry.subarray(0, 16)),
    });
  }
  return partitions;
}

/** A GUID as written (the first three groups are little-endian on disk). */
export function formatGuid(bytes: Buffer): string {
  const hex = (b: Buffer) => b.toString('hex');
  const le = (b: Buffer) => hex(Buffer.from(b).reverse());
  return [
    le(bytes.subarray(0, 4)),
    le(bytes.subarray(4, 6)),
    le(bytes.subarray(6, 8)),
    hex(bytes.subarray(8, 10)),
    hex(bytes.subarray(10, 16)),
  ].join('-');
}

/**
 * The disk's partitions: GPT when its protective MBR and valid header say so,
 * else the MBR's (with the logical partitions of an extended one); null when
 * the disk has no partition table. Partitions reaching past the disk's end
 * are cut at it.
 */
export async function readPartitionTable(read: ReadDisk, sizeBytes: number): Promise<Partition[] | null> {
  const mbr = parseMbr(await read(0, SECTOR_BYTES));
  if (mbr === null) return null;
  if (mbr.some((e) => e.type === GPT_PROTECTIVE)) {
    const header = parseGptHeader(await read(SECTOR_BYTES, SECTOR_BYTES));
    if (header !== null) {
      const entries = await read(header.entriesLba * SECTOR_BYTES, header.entryCount * header.entrySize);
      const gpt = parseGptEntries(entries, header);
      if (gpt !== null) return within(gpt, sizeBytes);
    }
  }
  const partitions: Partition[] = [];
  for (const entry of mbr) {
    if (EXTENDED_TYPES.has(entry.type)) {
      partitions.push(...(await logicalPartitions(read, entry.firstSector)));
      continue;
    }
    partitions.push(primary(entry));
  }
  return within(partitions, sizeBytes);
}

function primary(entry: MbrEntry): Partition {
  return {
    number: entry.slot,
    table: 'mbr',
    offsetBytes: entry.firstSector * SECTOR_BYTES,
    sizeBytes: entry.sectors * SECTOR_BYTES,
    typeCode: entry.type.toString(16).padStart(2, '0'),
  };
}

/** The chain of extended boot records: each holds one logical partition and a link to the next. */
async function logicalPartitions(read: ReadDisk, extendedStart: number): Promise<Partition[]> {
  const found: Partition[] = [];
  let ebr = extendedStart;
  const seen = new Set<number>();
  while (found.length < MAX_LOGICAL && !seen.has(ebr)) {
    seen.add(ebr);
    const entries = parseMbr(await read(ebr * SECTOR_BYTES, SECTOR_BYTES));
    if (entries === null) break;
    const [logical, next] = [entries.find((e) => e.slot === 1), entries.find((e) => e.slot === 2)];
    if (logical !== undefined && !EXTENDED_TYPES.has(logical.type)) {
      found.push({
        ...primary(logical),
        number: 5 + found.length,
        offsetBytes: (ebr + logical.firstSector) * SECTOR_BYTES,
      });
    }
    if (next === undefined || !EXTENDED_TYPES.has(next.type)) break;
    ebr = extendedStart + next.firstSector;
  }
  return found;
}

function within(partitions: Partition[], sizeBytes: number): Partition[] {
  return partitions
    .filter((p) => p.offsetBytes < sizeBytes)
    .map((p) => ({ ...p, sizeBytes: Math.min(p.sizeBytes, sizeBytes - p.offsetBytes) }));
}
