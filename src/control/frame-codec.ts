/**
 * Control-channel framing: each frame is a length-prefixed body of UTF-8 JSON
 * (see the shared length-prefixed codec).
 */
import { HavenError } from '../errors/index.ts';
import { encodeLengthPrefix, LengthPrefixedDecoder } from '../framing/length-prefixed-codec.ts';

/** Largest frame either side accepts once authenticated. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

const LABEL = 'control';

export function encodeFrame(message: unknown, maxFrameBytes = MAX_FRAME_BYTES): Buffer {
  const payload = Buffer.from(JSON.stringify(message), 'utf8');
  const head = encodeLengthPrefix(payload.length, { label: LABEL, maxBodyBytes: maxFrameBytes });
  return Buffer.concat([head, payload]);
}

/**
 * Turns a byte stream into decoded frames. `push` throws a HavenError on an
 * oversize frame or a payload that is not JSON; the connection must then be
 * closed, since the stream position can no longer be trusted.
 */
export class FrameDecoder {
  readonly #bodies: LengthPrefixedDecoder;

  constructor(maxFrameBytes = MAX_FRAME_BYTES) {
    this.#bodies = new LengthPrefixedDecoder({ label: LABEL, maxBodyBytes: maxFrameBytes });
  }

  get maxFrameBytes(): number {
    return this.#bodies.maxBodyBytes;
  }

  /** Raised once the peer is authenticated. */
  set maxFrameBytes(bytes: number) {
    this.#bodies.maxBodyBytes = bytes;
  }

  push(chunk: Buffer): unknown[] {
    return this.#bodies.push(chunk).map((body) => {
      try {
        return JSON.parse(body.toString('utf8'));
      } catch {
        throw new HavenError('bad_request', `control frame of ${body.length} bytes is not valid JSON`, {
          size: body.length,
        });
      }
    });
  }
}
