/**
 * A bandwidth limit shared by every disk a host replicates: callers take the
 * bytes they are about to send and wait while the bucket is in debt. A burst
 * of at most `burstSeconds` of traffic passes at once, so short-term rates
 * stay close to the limit.
 */
export class TokenBucket {
  bytesPerSecond: number;
  readonly burstSeconds: number;
  #tokens: number;
  #last: number;
  readonly #now: () => number;

  constructor(bytesPerSecond: number, burstSeconds = 0.05, now: () => number = () => performance.now()) {
    this.bytesPerSecond = bytesPerSecond;
    this.burstSeconds = burstSeconds;
    this.#now = now;
    this.#last = now();
    this.#tokens = bytesPerSecond * burstSeconds;
  }

  /** Takes `bytes` (going into debt if needed) and resolves once the debt is paid off. */
  async take(bytes: number): Promise<void> {
    const now = this.#now();
    const cap = this.bytesPerSecond * this.burstSeconds;
    this.#tokens = Math.min(cap, this.#tokens + ((now - this.#last) / 1000) * this.bytesPerSecond);
    this.#last = now;
    this.#tokens -= bytes;
    if (this.#tokens < 0) {
      const waitMs = (-this.#tokens / this.bytesPerSecond) * 1000;
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}
