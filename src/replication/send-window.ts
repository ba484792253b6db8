import type { JournalCursor } from './journal-cursor.ts';
import type { Signal } from './signal.ts';
import type { AckMessage } from './wire-protocol.ts';

/** How a sent frame counts once the receiver acknowledges it. */
export interface FrameAccounting {
  /** Sequence of the last journal record in the frame; null for frames without records. */
  lastSeq: number | null;
  /** Journal time of that record. */
  lastTimeMs: number;
  /** Journal bytes of the frame's records (see `journalBytes`). */
  recordBytes: number;
  /** Runs once the frame is acknowledged, before the journal is trimmed past it. */
  onAck?: () => Promise<void>;
}

/** A frame that carries no journal records (sync steps and data). */
export const NO_RECORDS: FrameAccounting = { lastSeq: null, lastTimeMs: 0, recordBytes: 0 };

interface InFlight extends FrameAccounting {
  /** Bytes of the frame on the wire. */
  bytes: number;
}

/** Throughput is averaged over acknowledgements this recent... */
const THROUGHPUT_WINDOW_MS = 5000;
/** ...and over at least this long, so one early ack does not read as a burst. */
const MIN_THROUGHPUT_SPAN_MS = 1000;
/** Least time from the end of one journal trim to the start of the next. */
const MIN_TRIM_INTERVAL_MS = 250;
/** Waiters re-check this often even without a wake-up (to see a lost connection). */
export const RECHECK_MS = 1000;

/**
 * The frames one disk's sender has in flight and what the receiver confirmed:
 * limits unacknowledged bytes, and trims the journal only through the
 * receiver's durable sequence. Acknowledged progress outlives connections;
 * frames in flight do not (`reset`).
 */
export class SendWindow {
  readonly windowBytes: number;
  readonly #cursor: JournalCursor;
  readonly #signal: Signal;
  readonly #onTrimError: (error: Error) => void;
  readonly #now: () => number;

  // Frames of the current connection.
  #inflight: InFlight[] = [];
  #ackedFrames = 0;
  #used = 0;

  // Progress as the receiver confirmed it.
  #ackedSeq = -1;
  #ackedTimeMs: number | null = null;
  #trimmed = -1;
  #trimChain: Promise<void> = Promise.resolve();
  /** Trims scheduled so far: a queued trim that a later one supersedes is skipped. */
  #trimsScheduled = 0;
  #lastTrimAt = Number.NEGATIVE_INFINITY;
  /** Acknowledged batches still stored in the journal (for bytes pending). */
  #ackedStored: { lastSeq: number; bytes: number }[] = [];
  #throughput: { atMs: number; bytes: number }[] = [];

  constructor(options: {
    cursor: JournalCursor;
    windowBytes: number;
    /** Notified on every acknowledgement and reset. */
    signal: Signal;
    onTrimError: (error: Error) => void;
    now?: () => number;
  }) {
    this.#cursor = options.cursor;
    this.windowBytes = options.windowBytes;
    this.#signal = options.signal;
    this.#onTrimError = options.onTrimError;
    this.#now = options.now ?? Date.now;
  }

  /** The receiver's durable sequence (-1: nothing yet). */
  get ackedSeq(): number {
    return this.#ackedSeq;
  }

  /** Journal time of the newest acknowledged record, or the start of the last completed sync. */
  get ackedTimeMs(): number | null {
    return this.#ackedTimeMs;
  }

  get isEmpty(): boolean {
    return this.#inflight.length === 0;
  }

  /** The receiver resumed a connection holding every record through `durableSeq`. */
  resume(durableSeq: number): void {
    this.#ackedSeq = durableSeq;
    this.#scheduleTrim(durableSeq);
  }

  /** The replica now holds the disk as it was at `timeMs` (a sync completed; it catches up from there). */
  coveredThrough(timeMs: number): void {
    this.#ackedTimeMs = Math.max(this.#ackedTimeMs ?? 0, timeMs);
  }

  /** Waits until a frame of `bytes` fits (one always fits into an empty window); `check` throws to give up. */
  async waitForRoom(bytes: number, check: () => void): Promise<void> {
    while (this.#used > 0 && this.#used + bytes > this.windowBytes) {
      check();
      await this.#signal.wait(RECHECK_MS);
    }
  }

  /** A frame of `bytes` was sent. */
  add(bytes: number, accounting: FrameAccounting): void {
    this.#inflight.push({ ...accounting, bytes });
    this.#used += bytes;
  }

  onAck(ack: AckMessage): void {
    const now = this.#now();
    const callbacks: (() => Promise<void>)[] = [];
    while (this.#ackedFrames < ack.frames && this.#inflight.length > 0) {
      const entry = this.#inflight.shift() as InFlight;
      this.#ackedFrames++;
      this.#used -= entry.bytes;
      if (entry.lastSeq !== null) {
        this.#ackedStored.push({ lastSeq: entry.lastSeq, bytes: entry.recordBytes });
        this.#throughput.push({ atMs: now, bytes: entry.recordBytes });
        if (entry.lastSeq <= ack.durableSeq) this.#ackedTimeMs = entry.lastTimeMs;
      }
      if (entry.onAck) callbacks.push(entry.onAck);
    }
    if (ack.durableSeq > this.#ackedSeq) this.#ackedSeq = ack.durableSeq;
    // Acknowledged sync steps (state file, bitmap clearing) happen before trimming past them.
    this.#trimChain = this.#trimChain.then(async () => {
      for (const cb of callbacks) await cb();
    });
    this.#scheduleTrim(ack.durableSeq);
    this.#signal.notify();
  }

  /** Waits until the receiver acknowledged everything sent on this connection; `check` throws to give up. */
  async drained(check: () => void): Promise<void> {
    while (this.#inflight.length > 0) {
      check();
      await this.#signal.wait(RECHECK_MS);
    }
    await this.#trimChain;
  }

  /** Settles once acknowledged steps and trims scheduled so far are done. */
  settled(): Promise<void> {
    return this.#trimChain;
  }

  /** The connection is gone: its frames in flight will never be acknowledged. */
  reset(): void {
    this.#inflight = [];
    this.#ackedFrames = 0;
    this.#used = 0;
    this.#signal.notify();
  }

  /** Journal bytes the receiver has not acknowledged. */
  pendingBytes(): number {
    const journal = this.#cursor.status;
    this.#ackedStored = this.#ackedStored.filter((b) => b.lastSeq >= journal.firstSeq);
    const storedAcked = this.#ackedStored.reduce((n, b) => n + b.bytes, 0);
    return Math.max(0, journal.usedBytes - storedAcked);
  }

  /** Journal bytes acknowledged per second, over the last few seconds. */
  throughputBytesPerSec(): number {
    const now = this.#now();
    this.#throughput = this.#throughput.filter((t) => now - t.atMs <= THROUGHPUT_WINDOW_MS);
    const span =
      this.#throughput.length > 0
        ? Math.max(MIN_THROUGHPUT_SPAN_MS, now - (this.#throughput[0]?.atMs ?? now))
        : MIN_THROUGHPUT_SPAN_MS;
    return Math.round((this.#throughput.reduce((n, t) => n + t.bytes, 0) * 1000) / span);
  }

  /**
   * Trims the journal through what the receiver holds durably (never further
   * than what was written). A trim saves the journal's state durably, so it
   * takes longer than acknowledgements take to arrive at high rates: a trim
   * still queued behind a running one is skipped when a later one is queued
   * too (that one trims further), else trimming would fall ever further
   * behind the acknowledgements and the journal would fill up. Trims are
   * also spaced `MIN_TRIM_INTERVAL_MS` apart: the journal frees whole
   * segments only, so trimming after every ack buys nothing but fsyncs.
   */
  #scheduleTrim(durable: number): void {
    const journal = this.#cursor;
    const ticket = ++this.#trimsScheduled;
    this.#trimChain = this.#trimChain
      .then(async () => {
        if (ticket !== this.#trimsScheduled) return;
        const wait = this.#lastTrimAt + MIN_TRIM_INTERVAL_MS - performance.now();
        if (wait > 0) {
          await new Promise((resolve) => setTimeout(resolve, wait));
          if (ticket !== this.#trimsScheduled) return;
        }
        const seq = Math.min(durable, journal.status.writtenSeq);
        if (seq > this.#trimmed && seq > journal.status.consumedSeq) {
          await journal.trimThrough(seq);
          this.#lastTrimAt = performance.now();
        }
        this.#trimmed = Math.max(this.#trimmed, seq);
      })
      .catch((e) => this.#onTrimError(e as Error));
  }
}
