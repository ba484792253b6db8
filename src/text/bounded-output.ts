/**
 * Output of a child process kept within bounds: scripts' and checkers' output
 * is evidence, shown whole when small, its start and end when large.
 */
/** Keeps the first `head` and the last `tail` bytes of a stream, counting all. */
export class BoundedOutput {
  readonly #head: Buffer;
  #headLength = 0;
  #tail: Buffer[] = [];
  #tailLength = 0;
  readonly #tailMax: number;
  total = 0;

  constructor(head: number, tail: number) {
    this.#head = Buffer.alloc(head);
    this.#tailMax = tail;
  }

  add(chunk: Buffer): void {
    this.total += chunk.length;
    const toHead = Math.min(chunk.length, this.#head.length - this.#headLength);
    chunk.copy(this.#head, this.#headLength, 0, toHead);
    this.#headLength += toHead;
    const rest = chunk.subarray(toHead);
    if (rest.length === 0) return;
    this.#tail.push(rest);
    this.#tailLength += rest.length;
    if (this.#tailLength > this.#tailMax * 2) this.#compact();
  }

  #compact(): void {
    const joined = Buffer.concat(this.#tail);
    const kept = joined.subarray(Math.max(0, joined.length - this.#tailMax));
    this.#tail = [Buffer.from(kept)];
    this.#tailLength = kept.length;
  }

  result(): { output: string; truncated: boolean } {
    this.#compact();
    const head = this.#head.subarray(0, this.#headLength);
    const tail = this.#tail[0] ?? Buffer.alloc(0);
    const cut = this.total - head.length - tail.length;
    if (cut === 0) return { output: Buffer.concat([head, tail]).toString('utf8'), truncated: false };
    return {
      output: `${head.toString('utf8')}\n[… ${cut} bytes of output cut …]\n${tail.toString('utf8')}`,
      truncated: true,
    };
  }
}
