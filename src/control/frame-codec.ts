/**
 * Control-channel framing: each frame is a 4-byte big-endian length followed
 * by that many bytes of UTF-8 JSON. The length is checked before the payload
 * is buffered, so a peer cannot make us hold more than `maxFrameBytes`.
 */
import { HavenError } from '../errors/index.ts';

/** Largest frame either side accepts once authenticated. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

const HEADER_BYTES = 4;

export function encodeFrame(message: unknown, maxFrameBytes = MAX_FRAME_BYTES): Buffer {
  const payload = Buffer.from(JSON.stringify(message), 'utf8');
  if (payload.length > maxFrameBytes) {
    throw new HavenError(
      'limit_exceeded',
      `control frame of ${payload.length} bytes exceeds the ${maxFrameBytes}-byte limit`,
      { size: payload.length, limit: maxFrameBytes },
    );
  }
  const frame = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  payload.copy(frame, HEADER_BYTES);
  return frame;
}

/**
 * Turns a byte stream into decoded frames. `push` throws a HavenError on an
 * oversize frame or a payload that is not JSON; the connection must then be
 * closed, since the stream position can no longer be trusted.
 */
export class FrameDecoder {
  maxFrameBytes: number;
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(maxFrameBytes = MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  push(chunk: Buffer): unknown[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const frames: unknown[] = [];
    while (this.#buffered >= HEADER_BYTES) {
      const head = this.#peek(HEADER_BYTES);
      const length = head.readUInt32BE(0);
      if (length > this.maxFrameBytes) {
        throw new HavenError(
          'limit_exceeded',
          `control frame of ${length} bytes exceeds the ${this.maxFrameBytes}-byte limit`,
          { size: length, limit: this.maxFrameBytes },
        );
      }
      if (this.#buffered < HEADER_BYTES + length) break;
      const frame = this.#take(HEADER_BYTES + length).subarray(HEADER_BYTES);
      try {
        frames.push(JSON.parse(frame.toString('utf8')));
      } catch {
        throw new HavenError('bad_request', `control frame of ${length} bytes is not valid JSON`, {
          size: length,
        });
      }
    }
    return frames;
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
    const taken = joined.subarray(0, n);
    const rest = joined.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return taken;
  }
}
