import { join } from 'node:path';
import { HavenError } from '../errors/index.ts';
import type { BlockBackend, BlockExtent, WriteOptions } from '../nbd/block-backend.ts';
import { NbdErrno } from '../nbd/constants.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import type { FileSync } from '../storage/file-sync.ts';
import { readOptionalText } from '../storage/optional-file.ts';
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

/** Kept beside the journal: the sink's size, and whether its mirror reached READY. */
interface SinkState {
  sizeBytes: number;
  /** Sequence of the flush record cut when the mirror was declared ready; null while it is not. */
  readySeq: number | null;
}

const STATE_FILE = 'sink.json';

async function readSinkState(path: string): Promise<SinkState | null> {
  const text = await readOptionalText(path);
  if (text === null) return null;
  const parsed = JSON.parse(text) as SinkState;
  if (!Number.isSafeInteger(parsed.sizeBytes)) {
    throw new HavenError('internal', `sink state '${path}' is damaged (no sizeBytes)`, { path });
  }
  return { sizeBytes: parsed.sizeBytes, readySeq: parsed.readySeq ?? null };
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
  readonly #statePath: string;
  #state: SinkState;
  readonly #timer: NodeJS.Timeout;
  #closed = false;

  private constructor(journal: WriteJournal, statePath: string, state: SinkState, intervalMs: number) {
    this.journal = journal;
    this.size = state.sizeBytes;
    this.#statePath = statePath;
    this.#state = state;
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
        state = { sizeBytes, readySeq: null };
        await writeFileAtomic(statePath, JSON.stringify(state));
      } else if (state.sizeBytes !== sizeBytes) {
        throw new HavenError(
          'conflict',
          `sink journal '${options.journalDir}' was made for a ${state.sizeBytes}-byte disk, not ${sizeBytes} bytes`,
          { field: 'sizeBytes', sizeBytes: state.sizeBytes },
        );
      }
      return new SinkBackend(journal, statePath, state, options.syncIntervalMs ?? DEFAULT_SINK_SYNC_MS);
    } catch (e) {
      await journal.close();
      throw e;
    }
  }

  /** Sequence of the first recovery point (the cut made when the mirror became ready), or null while not ready. */
  get readySeq(): number | null {
    return this.#state.readySeq;
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
    await this.journal.recordWrite(offset, data);
    if (options.fua) await this.journal.sync();
  }

  async trim(offset: number, length: number, options: WriteOptions): Promise<void> {
    this.#checkRange('trim', offset, length);
    if (length === 0) return;
    await this.journal.recordTrim(offset, length);
    if (options.fua) await this.journal.sync();
  }

  async writeZeroes(
    offset: number,
    length: number,
    options: WriteOptions & { mayTrim: boolean },
  ): Promise<void> {
    this.#checkRange('write zeroes', offset, length);
    if (length === 0) return;
    await this.journal.recordZero(offset, length);
    if (options.fua) await this.journal.sync();
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
    const record = await this.#cut();
    this.#state = { ...this.#state, readySeq: record.seq };
    await writeFileAtomic(this.#statePath, JSON.stringify(this.#state));
    return record;
  }

  /** The mirror job ended: no more points until it is armed and ready again. */
  async markNotReady(): Promise<void> {
    if (this.#state.readySeq === null) return;
    this.#state = { ...this.#state, readySeq: null };
    await writeFileAtomic(this.#statePath, JSON.stringify(this.#state));
  }

  /** Makes the journal durable and appends a flush record: a crash-consistent recovery point. */
  async cutPoint(): Promise<JournalRecord> {
    if (this.#state.readySeq === null) {
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
