/**
 * The md superblock (metadata 1.0) a server writes on its NBD leg, as the
 * host reads it back from the leg's image: whether the leg holds a
 * consistent copy of the array, so its flushes may become recovery points.
 * Layout: the kernel's include/uapi/linux/raid/md_p.h `struct
 * mdp_superblock_1` (little endian); 1.0 keeps it at the end of the device.
 */

export const MD_SB_MAGIC = 0xa92b4efc;
/** md's MaxSector: resync_offset when no resync is needed (the array is clean). */
export const MAX_SECTOR = 0xffff_ffff_ffff_ffffn;
/** feature_map bit: recovery_offset is meaningful, i.e. this member is being rebuilt. */
export const MD_FEATURE_RECOVERY_OFFSET = 2;
/** Bytes read to hold any superblock: 256 fixed + 2 per dev_roles slot (max_dev at most 1920). */
export const MD_SB_READ_BYTES = 4096;

export const MD_SB_FIXED_BYTES = 256;
/** dev_roles values that are not a data slot: spare, faulty, journal. */
const ROLE_SPARE = 0xffff;
const ROLE_FAULTY = 0xfffe;
const ROLE_JOURNAL = 0xfffd;

export interface MdSuperblock {
  /** set_uuid, hex: a new array (mdadm --create) has a new one. */
  arrayUuid: string;
  featureMap: number;
  raidDisks: number;
  /** This member's index into dev_roles. */
  devNumber: number;
  /** Its role: a slot number, or 'spare' / 'faulty' / 'journal'. */
  role: number | 'spare' | 'faulty' | 'journal' | 'absent';
  events: bigint;
  /** Sectors of the array known in sync; MAX_SECTOR when clean, 0 while the array is active (being written). */
  resyncOffset: bigint;
  /** Sectors of this member rebuilt, when featureMap has MD_FEATURE_RECOVERY_OFFSET. */
  recoveryOffset: bigint;
  /** Sectors of each member the array uses. */
  sizeSectors: bigint;
}

/** Where metadata 1.0 puts the superblock on a device of `sizeBytes`: ((sectors - 16) & ~7) sectors. */
export function mdSuperblockOffset(sizeBytes: number): number | null {
  const sectors = Math.floor(sizeBytes / 512);
  if (sectors < 16 + 8) return null;
  return (sectors - 16 - ((sectors - 16) % 8)) * 512;
}

/** md's calc_sb_1_csum: the 32-bit words of the superblock (csum field as 0), folded to 32 bits. */
export function mdSuperblockChecksum(sb: Buffer): number {
  const maxDev = sb.readUInt32LE(220);
  const size = MD_SB_FIXED_BYTES + maxDev * 2;
  let sum = 0;
  let at = 0;
  for (; size - at >= 4; at += 4) sum += at === 216 ? 0 : sb.readUInt32LE(at);
  if (size - at === 2) sum += sb.readUInt16LE(at);
  // sum < 2^53: at most 1216 words of 2^32.
  const low = sum % 2 ** 32;
  const high = Math.floor(sum / 2 ** 32);
  return (low + high) % 2 ** 32;
}

/**
 * Parses a version-1 superblock, or null when the bytes are not one (no
 * magic, a torn or stale write whose checksum does not match, a bad size).
 */
export function parseMdSuperblock(bytes: Buffer): MdSuperblock | null {
  if (bytes.length < MD_SB_FIXED_BYTES) return null;
  if (bytes.readUInt32LE(0) !== MD_SB_MAGIC || bytes.readUInt32LE(4) !== 1) return null;
  const maxDev = bytes.readUInt32LE(220);
  if (MD_SB_FIXED_BYTES + maxDev * 2 > bytes.length) return null;
  if (mdSuperblockChecksum(bytes) !== bytes.readUInt32LE(216)) return null;
  const devNumber = bytes.readUInt32LE(160);
  const raidDisks = bytes.readUInt32LE(92);
  return {
    arrayUuid: bytes.subarray(16, 32).toString('hex'),
    featureMap: bytes.readUInt32LE(8),
    raidDisks,
    devNumber,
    role: devNumber < maxDev ? roleOf(bytes.readUInt16LE(MD_SB_FIXED_BYTES + devNumber * 2)) : 'absent',
    events: bytes.readBigUInt64LE(200),
    resyncOffset: bytes.readBigUInt64LE(208),
    recoveryOffset: bytes.readBigUInt64LE(152),
    sizeSectors: bytes.readBigUInt64LE(80),
  };
}

function roleOf(value: number): MdSuperblock['role'] {
  if (value === ROLE_SPARE) return 'spare';
  if (value === ROLE_FAULTY) return 'faulty';
  if (value === ROLE_JOURNAL) return 'journal';
  return value;
}

/** What one superblock says of the member it was written on. */
export type MdMemberState =
  | { kind: 'clean-in-sync' }
  /** Being written (resync_offset 0): in sync only if it was before, which the superblock cannot say. */
  | { kind: 'active' }
  | { kind: 'resyncing'; syncedSectors: bigint }
  | { kind: 'recovering'; syncedSectors: bigint }
  /** Spare, faulty, journal or no role: holds no copy of the array. */
  | { kind: 'not-a-member' };

export function mdMemberState(sb: MdSuperblock): MdMemberState {
  const dataSlot = typeof sb.role === 'number' && sb.role < sb.raidDisks;
  if (!dataSlot) return { kind: 'not-a-member' };
  if ((sb.featureMap & MD_FEATURE_RECOVERY_OFFSET) !== 0) {
    return { kind: 'recovering', syncedSectors: sb.recoveryOffset };
  }
  if (sb.resyncOffset === MAX_SECTOR) return { kind: 'clean-in-sync' };
  if (sb.resyncOffset === 0n) return { kind: 'active' };
  return { kind: 'resyncing', syncedSectors: sb.resyncOffset };
}

export type MdLegMd = 'in-sync' | 'resyncing' | 'recovering' | 'unknown';

export interface MdLegView {
  md: MdLegMd;
  /** Bytes md recorded as done while resyncing or recovering. */
  syncedBytes: number | null;
  /** The leg holds a consistent copy: its flushes may be recovery points. */
  pointsAllowed: boolean;
}

/**
 * Follows the superblocks written on one leg. md writes resync_offset 0 on
 * every clean → active switch (the first write after an idle spell) and
 * MaxSector when it is clean again, so one superblock cannot tell an active
 * in-sync array from one that starts resyncing. A leg becomes in sync on a
 * clean in-sync superblock, or on an active one right after its rebuild
 * (a rebuilding member's superblock always carries the recovery bit, so one
 * without it means md declared the member in sync); it stays so through
 * active superblocks of the same array, and stops on anything else: a
 * rebuild, a resync checkpoint, a role that is no data slot, another array,
 * a superblock gone, or a lost connection (md may have failed the leg, or
 * recorded bad blocks on it, and written only to its own disk meanwhile;
 * only a superblock written after the connection came back vouches for it).
 */
export class MdLegTracker {
  #view: MdLegView = { md: 'unknown', syncedBytes: null, pointsAllowed: false };
  #arrayUuid: string | null = null;
  /** The last superblock's state and event count (null: none, or none valid). */
  #last: { kind: MdMemberState['kind']; events: bigint } | null = null;

  get view(): MdLegView {
    return { ...this.#view };
  }

  /** A superblock write landed (null: the bytes there are no valid superblock). Returns the new view. */
  observe(sb: MdSuperblock | null): MdLegView {
    const previous = this.#view;
    const sameArray = sb !== null && this.#arrayUuid === sb.arrayUuid;
    this.#arrayUuid = sb?.arrayUuid ?? null;
    const state: MdMemberState = sb === null ? { kind: 'not-a-member' } : mdMemberState(sb);
    this.#last = sb === null ? null : { kind: state.kind, events: sb.events };
    switch (state.kind) {
      case 'clean-in-sync':
        this.#view = { md: 'in-sync', syncedBytes: null, pointsAllowed: true };
        break;
      case 'active':
        this.#view =
          sameArray && (previous.pointsAllowed || previous.md === 'recovering')
            ? { md: 'in-sync', syncedBytes: null, pointsAllowed: true }
            : sameArray && previous.md === 'in-sync'
              ? // Back after a lost connection: in sync as md last said, no points until it says so again.
                { md: 'in-sync', syncedBytes: null, pointsAllowed: false }
              : {
                  md: 'resyncing',
                  syncedBytes: sameArray ? previous.syncedBytes : null,
                  pointsAllowed: false,
                };
        break;
      case 'resyncing':
      case 'recovering':
        this.#view = { md: state.kind, syncedBytes: Number(state.syncedSectors) * 512, pointsAllowed: false };
        break;
      case 'not-a-member':
        this.#view = { md: 'unknown', syncedBytes: null, pointsAllowed: false };
        break;
    }
    return this.view;
  }

  /**
   * The server's agent saw the array whole and idle (both legs in, no resync
   * or rebuild) at md event count `events`. md records the leg in sync only
   * when the array goes clean (no write for its safe-mode delay), which a
   * busy server may never allow, and an "active" superblock alone cannot tell
   * an in-sync array from one starting its resync. Every resync or rebuild
   * write had reached the leg before md went idle, so when the leg's last
   * superblock is active or clean, of no later event than what the agent
   * saw, the leg holds a whole copy. A rebuild or a checkpoint written since
   * carries its own state (and a higher event count) and is not overridden.
   */
  confirm(events: bigint): MdLegView {
    const last = this.#last;
    if (last !== null && (last.kind === 'active' || last.kind === 'clean-in-sync') && events >= last.events) {
      this.#view = { md: 'in-sync', syncedBytes: null, pointsAllowed: true };
    }
    return this.view;
  }

  /** The leg's connection closed: no points until a superblock written after it comes back says in sync. */
  disconnected(): MdLegView {
    if (this.#view.pointsAllowed) this.#view = { ...this.#view, pointsAllowed: false };
    return this.view;
  }
}
