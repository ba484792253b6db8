/**
 * Length-prefixed framing, shared by the control channel and replication:
 * each frame is a u32 big-endian body length, then the body. The length is
 * checked before the body is buffered, so a peer cannot make us hold more
 * than the limit.
 */
import { HavenError } from '../errors/index.ts';

export const LENGTH_PREFIX_BYTES = 4;

export interface FrameLimit {
  /** Names the frames in errors ("control", "replication"). */
  readonly label: string;
  readonly maxBodyBytes: number;
}

function frameTooLarge(label: string, size: number, limit: number): HavenError {
  return new HavenError('limit_exceeded', `${label} frame of ${size} bytes exceeds the ${limit}-byte limit`, {
    size,
    limit,
  });
}

/**
 * The head of a frame whose body is `bodyBytes` long: the length prefix,
 * followed by `spareBytes` left for the caller's own leading body bytes (a
 * frame type), so they go out in the same write as the prefix.
 */
export function encodeLengthPrefix(bodyBytes: number, limit: FrameLimit, spareBytes = 0): Buffer {
  if (bodyBytes > limit.maxBodyBytes) throw frameTooLarge(limit.label, bodyBytes, limit.maxBodyBytes);
  const head = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + spareBytes);
  head.writeUInt32BE(bodyBytes, 0);
  return head;
}

export interface LengthPrefixedDecoderOptions extends FrameLimit {
  /** Shortest body accepted (default 0). */
  readonly minBodyBytes?: number;
  /** The error for a length prefix out of range (default: the frame is too large). */
  readonly outOfRange?: (length: number, limit: number) => HavenError;
}

/**
 * Splits a byte stream into frame bodies. `push` throws on a length out of
 * range; the connection must then be closed, since the stream position can
 * no longer be trusted.
 */
export class LengthPrefixedDecoder {
  readonly label: string;
  /** Mutable: a peer may be allowed larger frames once it is authenticated. */
  maxBodyBytes: number;
  readonly #minBodyBytes: number;
  readonly #outOfRange: (length: number, limit: number) => HavenError;
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(options: LengthPrefixedDecoderOptions) {
    this.label = options.label;
    this.maxBodyBytes = options.maxBodyBytes;
    this.#minBodyBytes = options.minBodyBytes ?? 0;
    this.#outOfRange = options.outOfRange ?? ((length, limit) => frameTooLarge(this.label, length, limit));
  }

  /** Bytes received and not yet returned as a frame. */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): Buffer[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const bodies: Buffer[] = [];
    while (this.#buffered >= LENGTH_PREFIX_BYTES) {
      const length = this.#peek(LENGTH_PREFIX_BYTES).readUInt32BE(0);
      if (length < this.#minBodyBytes || length > this.maxBodyBytes) {
        throw this.#outOfRange(length, this.maxBodyBytes);
      }
      if (this.#buffered < LENGTH_PREFIX_BYTES + length) break;
      bodies.push(this.#take(LENGTH_PREFIX_BYTES + length).subarray(LENGTH_PREFIX_BYTES));
    }
    return bodies;
  }

  #peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const joined = Buffer.concat(this.#chunks);
    this.#chunks = [joined];
    return joined.subarray(0, n);
  }

  #take(n: number): Buffer {
    const joined = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const rest = joined.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return joined.subarray(0, n);
  }
}
