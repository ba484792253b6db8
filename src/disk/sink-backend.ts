import { join } from 'node:path';
import { HavenError } from '../errors/index.ts';
import type { BlockBackend, BlockExtent, WriteOptions } from '../nbd/block-backend.ts';
import { NbdErrno } from '../nbd/constants.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { SyncBudget } from '../storage/file-io.ts';
import type { FileSync } from '../storage/file-sync.ts';
import { readOptionalText } from '../storage/optional-file.ts';
import { type BlockHashes, blockDigest, checkBlockHashes, digestAt } from './block-hashes.ts';
import { checkRange } from './check-range.ts';
import type { JournalRecord } from './journal-record.ts';
import { type ResyncPlan, WriteJournal } from './write-journal.ts';

/** Default bound on how long an acknowledged sink write may stay only in the page cache. */
export const DEFAULT_SINK_SYNC_MS = 100;

export interface SinkBackendOptions {
  journalDir: string;
  /** Virtual size of the mirrored disk. */
  sizeBytes: number;
  journalCapacityBytes: number;
  journalSegmentBytes?: number;
  regionSize?: number;
  /** Group-commit interval: every journaled change is durable at most this long after its acknowledgement. */
  syncIntervalMs?: number;
  fileSync?: FileSync;
  now?: () => number;
  log?: (line: string) => void;
}

/** Kept beside the journal: the sink's size. */
interface SinkState {
  sizeBytes: number;
}

/** What a compare window did with the changes it saw (see `beginCompare`). */
export interface SinkCompareStats {
  /** Bytes of writes, write-zeroes and trims that arrived while comparing. */
  comparedBytes: number;
  /** Of those, bytes not journaled: whole blocks the replica already holds. */
  skippedBytes: number;
  /** Of those, bytes journaled. */
  journaledBytes: number;
}

/** A compare window: the replica's block hashes and which blocks were journaled since it began. */
interface CompareWindow {
  hashes: BlockHashes;
  /** One bit per block: set once anything was journaled for it in this window. */
  touched: Uint8Array;
  /** Digest of a zero block, by length (the last block may be shorter). */
  zeroDigests: Map<number, Buffer>;
  stats: SinkCompareStats;
}

/** A byte range of the sink to journal. */
interface Run {
  offset: number;
  length: number;
}

const STATE_FILE = 'sink.json';

async function readSinkState(path: string): Promise<SinkState | null> {
  const text = await readOptionalText(path);
  if (text === null) return null;
  const parsed = JSON.parse(text) as SinkState;
  if (!Number.isSafeInteger(parsed.sizeBytes)) {
    throw new HavenError('internal', `sink state '${path}' is damaged (no sizeBytes)`, { path });
  }
  return { sizeBytes: parsed.sizeBytes };
}

/**
 * The target of QEMU's active mirror (`blockdev-mirror`, `copy-mode:
 * write-blocking`): a disk with a size and no image. Every write, trim and
 * write-zeroes is appended to the write journal in arrival order and
 * acknowledged once it is there (page cache, which survives kill -9); nothing
 * else is stored, so the primary host keeps no second copy of the disk.
 *
 * QEMU does not forward guest flushes to a mirror target, so the sink makes
 * the journal durable itself every `syncIntervalMs` (and on FLUSH/FUA). NBD
 * FLUSH adds no flush record: before the mirror is ready its background copy
 * fills areas out of order, so no prefix is a consistent state. Flush records
 * (recovery points) are cut only by Haven: `markReady` once QEMU reported
 * BLOCK_JOB_READY, then `cutPoint`; from the ready cut on every prefix of the
 * arrival order is crash-consistent.
 *
 * Readiness lives in memory only: a sink opened again (agent restart) is not
 * ready, since writes QEMU could not deliver meanwhile may follow; the
 * orchestration checks QEMU's job and declares it ready again. A write the
 * journal refuses makes it not ready too.
 *
 * Compare mode (`beginCompare`), while re-arming the mirror with a full copy
 * onto a replica that already holds the disk: whole blocks whose data equals
 * the replica's are not journaled (see `#plan` for why that is exact).
 *
 * Reads and BLOCK_STATUS are refused with EIO: the mirror with write-blocking
 * never reads its target (checked against QEMU), and the sink has no data to
 * answer with but the journal, which it does not index.
 */
export class SinkBackend implements BlockBackend {
  readonly size: number;
  readonly readOnly = false;
  readonly canTrim = true;
  readonly canWriteZeroes = true;
  readonly journal: WriteJournal;
  readonly recovered = false;
  /** For the sender: no image to copy; the journal from record 1 is the disk. */
  readonly journalOnly = true;
  /** Sequence of the flush record cut when the mirror was declared ready; null while it is not. */
  #readySeq: number | null = null;
  /** Counts the times the sink was made not ready, so a ready cut racing one does not win. */
  #unreadied = 0;
  #compare: CompareWindow | null = null;
  readonly #timer: NodeJS.Timeout;
  #closed = false;

  private constructor(journal: WriteJournal, state: SinkState, intervalMs: number) {
    this.journal = journal;
    this.size = state.sizeBytes;
    this.#timer = setInterval(() => this.#syncIfBehind(), intervalMs);
    this.#timer.unref();
  }

  static async open(options: SinkBackendOptions): Promise<SinkBackend> {
    const { sizeBytes } = options;
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % 512 !== 0) {
      throw new HavenError('validation_failed', `sink size ${sizeBytes} must be a positive multiple of 512`, {
        field: 'sizeBytes',
      });
    }
    const journal = await WriteJournal.open(options.journalDir, {
      diskSize: sizeBytes,
      capacityBytes: options.journalCapacityBytes,
      // Appends on the event loop while they are fast (see FileIo): a sink does nothing else per
      // write, and the threadpool hand-off cost more than the copy (4 KiB writes: +15%).
      budget: new SyncBudget(),
      ...(options.journalSegmentBytes === undefined ? {} : { segmentBytes: options.journalSegmentBytes }),
      ...(options.regionSize === undefined ? {} : { regionSize: options.regionSize }),
      ...(options.fileSync === undefined ? {} : { fileSync: options.fileSync }),
      ...(options.now === undefined ? {} : { now: options.now }),
      ...(options.log === undefined ? {} : { log: options.log }),
    });
    try {
      const statePath = join(options.journalDir, STATE_FILE);
      let state = await readSinkState(statePath);
      if (state === null) {
        if (journal.status.nextSeq > 1) {
          throw new HavenError(
            'conflict',
            `journal '${options.journalDir}' belongs to a disk image, not to a sink; give the sink its own journal`,
            { field: 'journalDir' },
          );
        }
        state = { sizeBytes };
        await writeFileAtomic(statePath, JSON.stringify(state));
      } else if (state.sizeBytes !== sizeBytes) {
        throw new HavenError(
          'conflict',
          `sink journal '${options.journalDir}' was made for a ${state.sizeBytes}-byte disk, not ${sizeBytes} bytes`,
          { field: 'sizeBytes', sizeBytes: state.sizeBytes },
        );
      }
      return new SinkBackend(journal, state, options.syncIntervalMs ?? DEFAULT_SINK_SYNC_MS);
    } catch (e) {
      await journal.close();
      throw e;
    }
  }

  /** Sequence of the first recovery point (the cut made when the mirror became ready), or null while not ready. */
  get readySeq(): number | null {
    return this.#readySeq;
  }

  /** Whether a compare window is open. */
  get comparing(): boolean {
    return this.#compare !== null;
  }

  #syncIfBehind(): void {
    if (this.#closed || this.journal.failure !== null) return;
    const st = this.journal.status;
    if (st.durableSeq >= st.nextSeq - 1) return;
    // A failed sync leaves durableSeq behind; the next tick retries, and FLUSH reports it to the client.
    this.journal.sync().catch(() => {});
  }

  #checkRange(what: string, offset: number, length: number): void {
    checkRange(what, offset, length, { size: this.size, label: 'sink', closed: this.#closed });
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.#checkRange('read', offset, length);
    throw new HavenError(
      'not_available',
      'a journal-only sink keeps no copy of the disk: it cannot be read (it is a mirror target)',
      { errno: NbdErrno.EIO },
    );
  }

  async blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
    this.#checkRange('block status', offset, length);
    throw new HavenError(
      'not_available',
      'a journal-only sink keeps no copy of the disk: it has no allocation status',
      { errno: NbdErrno.EIO },
    );
  }

  async write(offset: number, data: Buffer, options: WriteOptions): Promise<void> {
    this.#checkRange('write', offset, data.length);
    if (data.length === 0) return;
    const runs = this.#plan(offset, data.length, (at, n) =>
      blockDigest(data.subarray(at - offset, at - offset + n)),
    );
    await this.#journaled(
      runs.map((r) =>
        r.offset === offset && r.length === data.length
          ? this.journal.recordWrite(offset, data)
          : this.journal.recordWrite(
              r.offset,
              data.subarray(r.offset - offset, r.offset - offset + r.length),
            ),
      ),
      options,
    );
  }

  async trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    this.#checkRange('trim', offset, length);
    if (length === 0) return;
    const runs = this.#plan(offset, length, null);
    await this.#journaled(
      runs.map((r) => this.journal.recordTrim(r.offset, r.length)),
      options,
    );
  }

  async writeZeroes(
    offset: number,
    length: number,
    options: WriteOptions & { mayTrim: boolean },
  ): Promise<void> {
    this.#checkRange('write zeroes', offset, length);
    if (length === 0) return;
    const runs = this.#plan(offset, length, (_at, n) => this.#zeroDigest(n));
    await this.#journaled(
      runs.map((r) => this.journal.recordZero(r.offset, r.length)),
      options,
    );
  }

  /**
   * The ranges of a change to journal. Outside compare mode: all of it. In
   * compare mode a whole block is skipped when nothing was journaled for it in
   * this window and its new contents hash like the replica's block; the rest
   * is journaled and its blocks marked touched. `digest` null: a trim, always
   * journaled.
   *
   * Why replica + journal equals replica + every change, for every prefix of
   * the arrival order: take a block. Before its first journaled change every
   * change to it was a skipped whole-block write of exactly what the replica
   * holds, so the disk's block still equals the replica's; from that change on
   * every change to it is journaled, in order. The replica's hashes are of its
   * state through `hashes.throughSeq`, the sink's last record when the window
   * opened (checked), and the replica applies this journal on top of exactly
   * that state. Runs synchronously, so the decision and the journal's sequence
   * follow one arrival order.
   */
  #plan(offset: number, length: number, digest: ((at: number, n: number) => Buffer) | null): Run[] {
    const window = this.#compare;
    if (window === null) return [{ offset, length }];
    const { hashes, touched, stats } = window;
    const bs = hashes.blockBytes;
    const end = offset + length;
    const runs: Run[] = [];
    const journal = (from: number, to: number): void => {
      const last = runs.at(-1);
      if (last !== undefined && last.offset + last.length === from) last.length += to - from;
      else runs.push({ offset: from, length: to - from });
    };
    for (let b = Math.floor(offset / bs); b * bs < end; b++) {
      const blockStart = b * bs;
      const blockEnd = Math.min(blockStart + bs, this.size);
      const from = Math.max(offset, blockStart);
      const to = Math.min(end, blockEnd);
      const mask = 1 << (b & 7);
      const whole = from === blockStart && to === blockEnd;
      const untouched = ((touched[b >> 3] as number) & mask) === 0;
      if (whole && untouched && digest?.(blockStart, to - from).equals(digestAt(hashes, b)) === true) {
        stats.skippedBytes += to - from;
        continue;
      }
      touched[b >> 3] = (touched[b >> 3] as number) | mask;
      stats.journaledBytes += to - from;
      journal(from, to);
    }
    stats.comparedBytes += length;
    return runs;
  }

  #zeroDigest(n: number): Buffer {
    const cache = (this.#compare as CompareWindow).zeroDigests;
    let d = cache.get(n);
    if (d === undefined) {
      d = blockDigest(Buffer.alloc(n));
      cache.set(n, d);
    }
    return d;
  }

  /**
   * Waits for a change's records (FUA: and their durability). A change the
   * journal refuses makes the sink not ready: QEMU's job sees the failure and
   * the mirror must be checked before the next point.
   */
  async #journaled(records: Promise<number | null>[], options: WriteOptions): Promise<void> {
    try {
      // Every record settles before this does: the server reuses the payload's buffer once it has.
      const settled = await Promise.allSettled(records);
      for (const r of settled) if (r.status === 'rejected') throw r.reason;
      if (options.fua) await this.journal.sync();
    } catch (e) {
      this.#unready();
      throw e;
    }
  }

  /**
   * Opens a compare window with the replica's block hashes (see `#plan`):
   * while the mirror is re-armed with a full copy, whole blocks the replica
   * already holds are not journaled. Refused on a ready sink (its writes are
   * live points), when already comparing, and when the hashes do not include
   * every record the sink journaled. Memory: the hashes (32 bytes a block)
   * and one bit a block.
   */
  beginCompare(hashes: BlockHashes): void {
    if (this.#closed) throw new HavenError('operation_not_allowed', 'the sink is closed', {});
    checkBlockHashes(hashes, this.size);
    if (this.#readySeq !== null) {
      throw new HavenError(
        'operation_not_allowed',
        `sink '${this.journal.dir}' is ready (its writes are recovery points): compare mode is for re-arming a mirror that is not`,
        { state: 'mirror-ready', allowed: ['markNotReady'] },
      );
    }
    if (this.#compare !== null) {
      throw new HavenError('conflict', `sink '${this.journal.dir}' is already comparing; end that first`, {
        state: 'comparing',
        allowed: ['endCompare'],
      });
    }
    if (this.journal.resyncRequired) {
      // Its writes since the overflow are only dirty regions: skipping blocks would not clear them.
      throw new HavenError(
        'operation_not_allowed',
        `sink journal '${this.journal.dir}' overflowed into its dirty bitmap: compare mode cannot resume it; ` +
          'arm the mirror into a new sink with a full copy',
        { mode: this.journal.mode, allowed: ['re-arm into a new sink'] },
      );
    }
    const last = this.journal.status.nextSeq - 1;
    if (hashes.throughSeq !== last) {
      throw new HavenError(
        'conflict',
        `the replica's hashes include records through ${hashes.throughSeq} but sink '${this.journal.dir}' journaled through ${last}: ` +
          'fetch them again once the replica acknowledged every record',
        { field: 'hashes', throughSeq: hashes.throughSeq, journaledSeq: last },
      );
    }
    this.#compare = {
      hashes,
      touched: new Uint8Array(Math.ceil(hashes.blockCount / 8)),
      zeroDigests: new Map(),
      stats: { comparedBytes: 0, skippedBytes: 0, journaledBytes: 0 },
    };
  }

  /** Closes the compare window: every change is journaled again. Returns what it did. */
  endCompare(): SinkCompareStats {
    const window = this.#compare;
    if (window === null) {
      throw new HavenError('operation_not_allowed', `sink '${this.journal.dir}' is not comparing`, {
        state: 'not-comparing',
        allowed: ['beginCompare'],
      });
    }
    this.#compare = null;
    return { ...window.stats };
  }

  /** NBD FLUSH: the journal is made durable; no flush record (see the class comment). */
  async flush(): Promise<void> {
    if (this.#closed) throw new HavenError('operation_not_allowed', 'the sink is closed', {});
    await this.journal.sync();
  }

  /**
   * The mirror job reached READY: cuts the first recovery point and
   * remembers it (every later prefix of the journal is crash-consistent).
   */
  async markReady(): Promise<JournalRecord> {
    if (this.#compare !== null) {
      throw new HavenError(
        'operation_not_allowed',
        `sink '${this.journal.dir}' is still comparing against the replica: end compare mode before declaring it ready`,
        { state: 'comparing', allowed: ['endCompare'] },
      );
    }
    const unreadied = this.#unreadied;
    const record = await this.#cut();
    if (this.#unreadied !== unreadied) {
      throw new HavenError(
        'conflict',
        `sink '${this.journal.dir}' lost its mirror while it was being declared ready (a connection closed or a write failed): check the mirror job again`,
        { state: 'mirror-not-ready', allowed: ['markReady'] },
      );
    }
    this.#readySeq = record.seq;
    return record;
  }

  /** The mirror job ended or its connection closed: no more points until it is armed and ready again. */
  async markNotReady(): Promise<void> {
    this.#unready();
  }

  #unready(): void {
    this.#readySeq = null;
    this.#unreadied++;
  }

  /** Makes the journal durable and appends a flush record: a crash-consistent recovery point. */
  async cutPoint(): Promise<JournalRecord> {
    if (this.#readySeq === null) {
      throw new HavenError(
        'operation_not_allowed',
        'the sink has no consistent point yet: its mirror is not ready (markReady after BLOCK_JOB_READY)',
        { state: 'mirror-not-ready', allowed: ['markReady'] },
      );
    }
    return this.#cut();
  }

  async #cut(): Promise<JournalRecord> {
    if (this.#closed) throw new HavenError('operation_not_allowed', 'the sink is closed', {});
    const seq = await this.journal.flush();
    if (seq === null) {
      throw new HavenError(
        'operation_not_allowed',
        `sink journal '${this.journal.dir}' is full and records dirty regions only; points resume after a resync`,
        { mode: 'bitmap', allowed: ['resync'] },
      );
    }
    return { seq, timeMs: Date.now(), kind: 'flush', offset: 0, length: 0 };
  }

  /** A sink has no image to copy regions from: the VM's own disk must be read through QEMU. */
  async beginResync(): Promise<ResyncPlan> {
    throw new HavenError(
      'operation_not_allowed',
      'a journal-only sink cannot resync its dirty regions itself: they are read from the VM disk through QEMU',
      { allowed: ['re-arm'] },
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.journal.close();
  }
}
