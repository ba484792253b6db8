/**
 * Group commit: callers that ask for durability while a sync is running share
 * the next sync instead of each paying for its own. A sync only covers what was
 * written before it started, so a caller arriving mid-sync waits for the next.
 */
export class GroupCommit {
  readonly #doSync: () => Promise<void>;
  #running: Promise<void> | null = null;
  #next: Promise<void> | null = null;

  constructor(doSync: () => Promise<void>) {
    this.#doSync = doSync;
  }

  /** Resolves once a sync that started after this call has completed. */
  sync(): Promise<void> {
    const running = this.#running;
    if (running === null) return this.#start();
    if (this.#next === null) {
      this.#next = running
        .catch(() => {})
        .then(() => {
          this.#next = null;
          return this.#start();
        });
    }
    return this.#next;
  }

  /** Resolves when no sync is running or queued (used before closing files). */
  async idle(): Promise<void> {
    while (this.#running !== null || this.#next !== null) {
      await (this.#next ?? this.#running)?.catch(() => {});
    }
  }

  #start(): Promise<void> {
    const p = this.#doSync().finally(() => {
      if (this.#running === p) this.#running = null;
    });
    this.#running = p;
    return p;
  }
}
