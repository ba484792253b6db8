/**
 * What a partition (or a whole disk) holds, told by its signature alone: the
 * magic numbers the kernel and blkid look for, at their offsets.
 */
export type FilesystemType =
  | 'ext2'
  | 'ext3'
  | 'ext4'
  | 'xfs'
  | 'swap'
  | 'lvm2-member'
  | 'luks'
  | 'vfat'
  | 'ntfs'
  | 'unknown';

export interface FilesystemSignature {
  type: FilesystemType;
  label: string | null;
  uuid: string | null;
}

/** Bytes from the start of a partition that identifyFilesystem reads (swap's signature ends a 64 KiB page at most). */
export const SIGNATURE_BYTES = 64 * 1024;

const EXT_SUPERBLOCK = 1024;
const EXT_MAGIC = 0xef53;
const EXT3_HAS_JOURNAL = 0x4;
/** Incompat features ext3 does not have: extents, 64bit, flex_bg, inline data... any makes it ext4. */
const EXT4_INCOMPAT = 0x40 | 0x80 | 0x200 | 0x8000 | 0x10000;
const EXT4_RO_COMPAT = 0x8 | 0x40 | 0x400;
const SWAP_PAGE_SIZES = [4096, 8192, 16384, 65536];

const unknown: FilesystemSignature = { type: 'unknown', label: null, uuid: null };

/** The filesystem (or volume) whose signature starts `head`, the first SIGNATURE_BYTES of it. */
export function identifyFilesystem(head: Buffer): FilesystemSignature {
  return (
    ext(head) ?? xfs(head) ?? luks(head) ?? lvm(head) ?? swap(head) ?? ntfs(head) ?? vfat(head) ?? unknown
  );
}

function ext(head: Buffer): FilesystemSignature | null {
  const sb = head.subarray(EXT_SUPERBLOCK, EXT_SUPERBLOCK + 1024);
  if (sb.length < 1024 || sb.readUInt16LE(56) !== EXT_MAGIC) return null;
  const compat = sb.readUInt32LE(92);
  const incompat = sb.readUInt32LE(96);
  const roCompat = sb.readUInt32LE(100);
  const type =
    (incompat & EXT4_INCOMPAT) !== 0 || (roCompat & EXT4_RO_COMPAT) !== 0
      ? 'ext4'
      : (compat & EXT3_HAS_JOURNAL) !== 0
        ? 'ext3'
        : 'ext2';
  return { type, label: text(sb.subarray(120, 136)), uuid: uuid(sb.subarray(104, 120)) };
}

function xfs(head: Buffer): FilesystemSignature | null {
  if (head.length < 120 || head.toString('latin1', 0, 4) !== 'XFSB') return null;
  return { type: 'xfs', label: text(head.subarray(108, 120)), uuid: uuid(head.subarray(32, 48)) };
}

function luks(head: Buffer): FilesystemSignature | null {
  if (head.length < 208) return null;
  const magic = head.subarray(0, 6);
  if (
    !magic.equals(Buffer.from('LUKS\xba\xbe', 'latin1')) &&
    !magic.equals(Buffer.from('SKUL\xba\xbe', 'latin1'))
  )
    return null;
  return { type: 'luks', label: null, uuid: text(head.subarray(168, 208)) };
}

/** An LVM2 physical volume: its label is in one of the first four sectors. */
function lvm(head: Buffer): FilesystemSignature | null {
  for (let sector = 0; sector < 4; sector++) {
    const at = sector * 512;
    if (head.length < at + 64) return null;
    if (
      head.toString('latin1', at, at + 8) === 'LABELONE' &&
      head.toString('latin1', at + 24, at + 32) === 'LVM2 001'
    ) {
      const header = at + head.readUInt32LE(at + 20);
      return { type: 'lvm2-member', label: null, uuid: text(head.subarray(header, header + 32)) };
    }
  }
  return null;
}

function swap(head: Buffer): FilesystemSignature | null {
  for (const page of SWAP_PAGE_SIZES) {
    if (head.length < page) break;
    const magic = head.toString('latin1', page - 10, page);
    if (magic === 'SWAPSPACE2' || magic === 'SWAP-SPACE') {
      return {
        type: 'swap',
        label: text(head.subarray(1024 + 28, 1024 + 44)),
        uuid: uuid(head.subarray(1024 + 12, 1024 + 28)),
      };
    }
  }
  return null;
}

function ntfs(head: Buffer): FilesystemSignature | null {
  if (head.length < 80 || head.toString('latin1', 3, 11) !== 'NTFS    ') return null;
  return {
    type: 'ntfs',
    label: null,
    uuid: Buffer.from(head.subarray(72, 80)).reverse().toString('hex').toUpperCase(),
  };
}

/** A FAT boot sector names its kind; an MBR, which ends in the same 55 AA, does not. */
function vfat(head: Buffer): FilesystemSignature | null {
  if (head.length < 512 || head[510] !== 0x55 || head[511] !== 0xaa) return null;
  if (head.toString('latin1', 82, 87) === 'FAT32') {
    return { type: 'vfat', label: text(head.subarray(71, 82)), uuid: serial(head.readUInt32LE(67)) };
  }
  if (head.toString('latin1', 54, 57) === 'FAT') {
    return { type: 'vfat', label: text(head.subarray(43, 54)), uuid: serial(head.readUInt32LE(39)) };
  }
  return null;
}

function serial(n: number): string {
  const hex = n.toString(16).toUpperCase().padStart(8, '0');
  return `${hex.slice(0, 4)}-${hex.slice(4)}`;
}

/** A label: up to the first NUL, trailing blanks dropped; null when empty. */
function text(bytes: Buffer): string | null {
  const end = bytes.indexOf(0);
  const value = bytes
    .subarray(0, end === -1 ? bytes.length : end)
    .toString('utf8')
    .trimEnd();
  return value === '' ? null : value;
}

/** A UUID stored as 16 bytes in order (ext, xfs, swap); null when all zero. */
function uuid(bytes: Buffer): string | null {
  if (bytes.every((b) => b === 0)) return null;
  const h = bytes.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
