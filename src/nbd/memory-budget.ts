/**
 * One bound on the NBD server's request and reply memory across all its
 * connections. Each connection reserves a request's payload (a WRITE's data,
 * a READ's reply) before reading it; when the budget is spent, connections
 * wait for their turn (in arrival order) and stop reading, so TCP holds the
 * clients back. When someone has waited longer than `evictAfterMs` while
 * connections hold reservations for replies their clients have not taken for
 * as long, those connections are closed, the largest holders first: a client
 * that never reads its replies cannot keep the others waiting for ever.
 * Large requests use at most seven eighths of the budget, and small ones
 * (a guest's usual I/O) go ahead of them into the rest: clients that fill
 * the budget with large requests do not hold up everyone else's small ones.
 */
import { HavenError } from '../errors/index.ts';

export const DEFAULT_NBD_MEMORY_BYTES = 256 * 1024 * 1024;
/** Requests up to this size may use the headroom that large ones leave, ahead of them. */
const SMALL_REQUEST_BYTES = 4 * 1024 * 1024;

export interface MemoryBudgetOptions {
  /** Bytes of payload (requests being served plus replies not yet sent) across all connections. */
  totalBytes?: number;
  /** How long a reservation may wait, and a reply stay unsent, before its holder may be closed. Default 2 s. */
  evictAfterMs?: number;
  log?: (line: string) => void;
  now?: () => number;
}

/** What the budget needs to know about a connection. */
export interface MemoryHolder {
  /** For the log: who the client is. */
  describe(): string;
  /** When the oldest reply still waiting for the client to take it was ready, or null when none waits. */
  oldestUnsentReplyMs(): number | null;
  /** Closes the connection; its reservations are released as its requests end. */
  evict(): void;
}

interface Waiter {
  account: MemoryAccount;
  bytes: number;
  sinceMs: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** One connection's share of the budget. */
export class MemoryAccount {
  readonly #budget: NbdMemoryBudget;
  readonly holder: MemoryHolder;
  reserved = 0;
  evicted = false;

  constructor(budget: NbdMemoryBudget, holder: MemoryHolder) {
    this.#budget = budget;
    this.holder = holder;
  }

  /** Reserves `bytes`: null when granted at once, else a promise that resolves when granted. */
  acquire(bytes: number): Promise<void> | null {
    return this.#budget.acquire(this, bytes);
  }

  release(bytes: number): void {
    this.#budget.release(this, bytes);
  }

  /** Ends the account's waits (the connection stops or closed). */
  cancel(): void {
    this.#budget.cancel(this);
  }
}

export class NbdMemoryBudget {
  readonly totalBytes: number;
  readonly #evictAfterMs: number;
  readonly #log: (line: string) => void;
  readonly #now: () => number;
  readonly #accounts = new Set<MemoryAccount>();
  #queue: Waiter[] = [];
  #used = 0;
  #timer: ReturnType<typeof setInterval> | null = null;
  /** Connections closed for holding memory (for stats and tests). */
  evictions = 0;

  constructor(options: MemoryBudgetOptions = {}) {
    this.totalBytes = options.totalBytes ?? DEFAULT_NBD_MEMORY_BYTES;
    this.#evictAfterMs = options.evictAfterMs ?? 2000;
    this.#log = options.log ?? ((line) => console.error(line));
    this.#now = options.now ?? Date.now;
  }

  get usedBytes(): number {
    return this.#used;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  open(holder: MemoryHolder): MemoryAccount {
    const account = new MemoryAccount(this, holder);
    this.#accounts.add(account);
    return account;
  }

  acquire(account: MemoryAccount, bytes: number): Promise<void> | null {
    const want = Math.min(bytes, this.totalBytes);
    if (want <= 0) return null;
    if ((this.#queue.length === 0 || want <= SMALL_REQUEST_BYTES) && this.#fits(want)) {
      this.#grant(account, want);
      return null;
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ account, bytes: want, sinceMs: this.#now(), resolve, reject });
      this.#timer ??= setInterval(() => this.#evictStalled(), Math.max(50, this.#evictAfterMs / 4));
      this.#timer.unref();
    });
  }

  release(account: MemoryAccount, bytes: number): void {
    const give = Math.min(Math.min(bytes, this.totalBytes), account.reserved);
    account.reserved -= give;
    this.#used -= give;
    if (account.reserved === 0 && account.evicted) this.#accounts.delete(account);
    this.#pump();
  }

  cancel(account: MemoryAccount): void {
    const mine = this.#queue.filter((w) => w.account === account);
    if (mine.length === 0) return;
    this.#queue = this.#queue.filter((w) => w.account !== account);
    for (const w of mine) {
      w.reject(new HavenError('unreachable', 'NBD connection closed while waiting for memory', {}));
    }
    this.#pump();
  }

  /** The connection closed: forget it once its reservations are released. */
  close(account: MemoryAccount): void {
    this.cancel(account);
    account.evicted = true;
    if (account.reserved === 0) this.#accounts.delete(account);
  }

  #fits(bytes: number): boolean {
    const limit =
      bytes <= SMALL_REQUEST_BYTES ? this.totalBytes : this.totalBytes - Math.floor(this.totalBytes / 8);
    return this.#used + bytes <= Math.max(limit, bytes);
  }

  #grant(account: MemoryAccount, bytes: number): void {
    account.reserved += bytes;
    this.#used += bytes;
  }

  #pump(): void {
    // Large requests keep their order; small ones may pass them.
    let largeBlocked = false;
    for (let i = 0; i < this.#queue.length; ) {
      const w = this.#queue[i] as Waiter;
      const large = w.bytes > SMALL_REQUEST_BYTES;
      if ((large && largeBlocked) || !this.#fits(w.bytes)) {
        if (large) largeBlocked = true;
        i++;
        continue;
      }
      this.#queue.splice(i, 1);
      this.#grant(w.account, w.bytes);
      w.resolve();
    }
    if (this.#queue.length === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  #evictStalled(): void {
    const head = this.#queue[0];
    if (head === undefined) return;
    const now = this.#now();
    if (now - head.sinceMs < this.#evictAfterMs) return;
    let short = this.#used + head.bytes - (this.totalBytes - Math.floor(this.totalBytes / 8));
    const stalled = [...this.#accounts]
      .filter((a) => {
        const since = a.holder.oldestUnsentReplyMs();
        return !a.evicted && a.reserved > 0 && since !== null && now - since >= this.#evictAfterMs;
      })
      .sort((a, b) => b.reserved - a.reserved);
    for (const account of stalled) {
      if (short <= 0) break;
      short -= account.reserved;
      account.evicted = true;
      this.evictions++;
      this.#log(
        `NBD: closing ${account.holder.describe()}: it holds ${mib(account.reserved)} of replies it has not read for ` +
          `${now - (account.holder.oldestUnsentReplyMs() ?? now)} ms while the server's ${mib(this.totalBytes)} ` +
          `memory budget is spent (${this.#queue.length} requests waiting)`,
      );
      account.holder.evict();
    }
  }
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
