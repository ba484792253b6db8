import { HavenError } from '../errors/index.ts';

/** What the dynamic loader needs to run a 64-bit little-endian ELF. */
export interface ElfDynamic {
  /** PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2; absent for a static binary. */
  interpreter?: string;
  /** DT_NEEDED sonames, in file order. */
  needed: string[];
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;

/**
 * Reads an ELF's interpreter and needed libraries (what `readelf -d` shows),
 * so the guest image can carry a Debian program with exactly the shared
 * libraries it loads, without binutils on the build host.
 */
export function readElfDynamic(elf: Buffer): ElfDynamic {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) {
    throw new HavenError('bad_request', 'not a 64-bit little-endian ELF file', {});
  }
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  const loads: { vaddr: bigint; offset: bigint; filesz: bigint }[] = [];
  let interpreter: string | undefined;
  let dynamic: { offset: number; size: number } | undefined;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 56 > elf.length) throw new HavenError('bad_request', 'ELF program headers are truncated', {});
    const type = elf.readUInt32LE(at);
    const offset = elf.readBigUInt64LE(at + 8);
    const filesz = elf.readBigUInt64LE(at + 32);
    if (type === PT_LOAD) loads.push({ vaddr: elf.readBigUInt64LE(at + 16), offset, filesz });
    if (type === PT_INTERP) interpreter = cString(elf, Number(offset));
    if (type === PT_DYNAMIC) dynamic = { offset: Number(offset), size: Number(filesz) };
  }
  if (!dynamic) return { ...(interpreter ? { interpreter } : {}), needed: [] };
  const neededOffsets: bigint[] = [];
  let strtab: bigint | undefined;
  for (let at = dynamic.offset; at + 16 <= dynamic.offset + dynamic.size; at += 16) {
    const tag = elf.readBigInt64LE(at);
    const value = elf.readBigUInt64LE(at + 8);
    if (tag === 0n) break;
    if (tag === DT_NEEDED) neededOffsets.push(value);
    if (tag === DT_STRTAB) strtab = value;
  }
  if (neededOffsets.length > 0 && strtab === undefined) {
    throw new HavenError('bad_request', 'ELF has DT_NEEDED entries but no string table', {});
  }
  // DT_STRTAB is a virtual address: the PT_LOAD segment holding it maps it to the file.
  const segment = loads.find((l) => strtab !== undefined && strtab >= l.vaddr && strtab < l.vaddr + l.filesz);
  if (neededOffsets.length > 0 && !segment) {
    throw new HavenError('bad_request', 'ELF string table lies outside every loaded segment', {});
  }
  const strtabOffset = segment ? Number(strtab! - segment.vaddr + segment.offset) : 0;
  return {
    ...(interpreter ? { interpreter } : {}),
    needed: neededOffsets.map((o) => cString(elf, strtabOffset + Number(o))),
  };
}

/** A 64-bit ELF with no PT_INTERP program header runs without a dynamic loader. */
export function isStaticElf(elf: Buffer): boolean {
  try {
    return readElfDynamic(elf).interpreter === undefined;
  } catch {
    return false;
  }
}

function cString(buffer: Buffer, at: number): string {
  const end = buffer.indexOf(0, at);
  return buffer.toString('latin1', at, end < 0 ? buffer.length : end);
}
