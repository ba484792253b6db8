import { HavenError } from '../errors/index.ts';

/** Bounds-checked big-endian reads over one received message. */
export class ByteCursor {
  readonly #buf: Buffer;
  #pos = 0;

  constructor(buf: Buffer) {
    this.#buf = buf;
  }

  get remaining(): number {
    return this.#buf.length - this.#pos;
  }

  #need(n: number): void {
    if (this.remaining < n) {
      throw new HavenError(
        'bad_request',
        `NBD message too short: needs ${n} more bytes, has ${this.remaining}`,
      );
    }
  }

  u16(): number {
    this.#need(2);
    const v = this.#buf.readUInt16BE(this.#pos);
    this.#pos += 2;
    return v;
  }

  u32(): number {
    this.#need(4);
    const v = this.#buf.readUInt32BE(this.#pos);
    this.#pos += 4;
    return v;
  }

  u64(): bigint {
    this.#need(8);
    const v = this.#buf.readBigUInt64BE(this.#pos);
    this.#pos += 8;
    return v;
  }

  bytes(n: number): Buffer {
    this.#need(n);
    const v = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return v;
  }

  /** A UTF-8 string of `n` bytes (protocol strings carry their length elsewhere). */
  string(n: number): string {
    return this.bytes(n).toString('utf8');
  }
}
