/**
 * Property test: a seeded stream of broken, truncated and hostile handshakes,
 * options and requests against one server, while a well-behaved client keeps
 * working. Every bad input gets the protocol's error or a closed connection;
 * afterwards the backend matches a model and no connection state is left.
 * Replay a failure with NBD_FUZZ_SEED=<seed>.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { scratchDir } from '../testing/nbd-test-fixture.ts';
import { SeededRandom } from '../testing/seeded-random.ts';
import {
  BASE_ALLOCATION,
  Command,
  CommandFlag,
  IHAVEOPT,
  NBD_MAGIC,
  NbdErrno,
  OPTION_REPLY_MAGIC,
  Option,
  OptionReply,
  ReplyFlag,
  ReplyType,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from './constants.ts';
import { MemoryBackend } from './memory-backend.ts';
import { lengthPrefixed, optionRequest, requestHeader } from './messages.ts';
import { NbdClient } from './nbd-client.ts';
import { NbdServer } from './nbd-server.ts';
import { StreamReader } from './stream-reader.ts';

const KiB = 1024;
const SIZE = 1024 * KiB;
/** Fuzzed connections write below this offset; the steady client above it. */
const FUZZ_AREA = 768 * KiB;
const MAX_PAYLOAD = 256 * KiB;
const CASES = Number(process.env.NBD_FUZZ_CASES ?? 250);
const SEED = Number(process.env.NBD_FUZZ_SEED ?? 20261121);

/** A hand-driven connection that can send anything. */
class RawPeer {
  readonly socket: net.Socket;
  readonly reader: StreamReader;
  closed = false;
  readonly whenClosed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.reader = new StreamReader(socket);
    socket.on('error', () => {});
    this.whenClosed = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        resolve();
      }),
    );
  }

  static async connect(path: string): Promise<RawPeer> {
    const socket = net.connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawPeer(socket);
  }

  send(buf: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(buf);
  }

  async read(n: number, ms = 3000): Promise<Buffer> {
    const timer = new AbortController();
    const timeout = sleep(ms, undefined, { signal: timer.signal }).then(
      () => {
        throw new Error(`no ${n}-byte answer within ${ms} ms`);
      },
      () => undefined as never,
    );
    try {
      return await Promise.race([this.reader.read(n), timeout]);
    } finally {
      timer.abort();
    }
  }

  /** Asserts that the server drops us (without us closing first). */
  async expectClosedByServer(what: string): Promise<void> {
    const timer = new AbortController();
    const timedOut = await Promise.race([
      this.whenClosed.then(() => false),
      sleep(3000, true, { signal: timer.signal }).catch(() => false),
    ]);
    timer.abort();
    assert.equal(timedOut, false, `server kept the connection open after ${what}`);
  }

  async greet(): Promise<void> {
    const g = await this.read(18);
    assert.equal(g.readBigUInt64BE(0), NBD_MAGIC);
    assert.equal(g.readBigUInt64BE(8), IHAVEOPT);
  }

  /** Sends an option and reads replies up to the final one. */
  async option(option: number, data?: Buffer): Promise<Array<{ type: number; data: Buffer }>> {
    this.send(optionRequest(option, data));
    const out: Array<{ type: number; data: Buffer }> = [];
    for (;;) {
      const h = await this.read(20);
      assert.equal(h.readBigUInt64BE(0), OPTION_REPLY_MAGIC);
      assert.equal(h.readUInt32BE(8), option, 'option reply echoes the option');
      const type = h.readUInt32BE(12);
      const len = h.readUInt32BE(16);
      assert.ok(len <= 64 * KiB, `option reply of ${len} bytes`);
      out.push({ type, data: len ? await this.read(len) : Buffer.alloc(0) });
      if (type === OptionReply.ACK || type >= 0x80000000) return out;
    }
  }

  async enter(exportName: string, meta: boolean): Promise<void> {
    await this.greet();
    this.send(Buffer.from([0, 0, 0, 3]));
    assert.equal((await this.option(Option.STRUCTURED_REPLY))[0]?.type, OptionReply.ACK);
    if (meta) {
      const q = Buffer.concat([
        lengthPrefixed(exportName),
        Buffer.from([0, 0, 0, 1]),
        lengthPrefixed(BASE_ALLOCATION),
      ]);
      assert.equal((await this.option(Option.SET_META_CONTEXT, q)).at(-1)?.type, OptionReply.ACK);
    }
    const go = Buffer.concat([lengthPrefixed(exportName), Buffer.from([0, 0])]);
    assert.equal((await this.option(Option.GO, go)).at(-1)?.type, OptionReply.ACK);
  }

  /** Reads one whole reply (all chunks up to DONE): cookie, error and READ data. */
  async reply(): Promise<{ cookie: bigint; errno: number; data: Buffer | null; chunks: number[] }> {
    let errno = 0;
    let data: Buffer | null = null;
    const chunks: number[] = [];
    for (;;) {
      const magic = (await this.read(4)).readUInt32BE(0);
      if (magic === SIMPLE_REPLY_MAGIC) {
        const h = await this.read(12);
        return { cookie: h.readBigUInt64BE(4), errno: h.readUInt32BE(0), data, chunks };
      }
      assert.equal(magic, STRUCTURED_REPLY_MAGIC, 'reply magic');
      const h = await this.read(16);
      const flags = h.readUInt16BE(0);
      const type = h.readUInt16BE(2);
      const cookie = h.readBigUInt64BE(4);
      const len = h.readUInt32BE(12);
      const body = len ? await this.read(len) : Buffer.alloc(0);
      chunks.push(type);
      if (type === ReplyType.ERROR) errno = body.readUInt32BE(0);
      if (type === ReplyType.OFFSET_DATA) data = body.subarray(8);
      // Every reply here is a single chunk; our server never splits.
      assert.ok(flags & ReplyFlag.DONE, 'single-chunk replies carry DONE');
      return { cookie, errno, data, chunks };
    }
  }
}

interface Planned {
  header: Buffer;
  payload: Buffer;
  expect: number;
  /** Applies the request to the model once it succeeded. */
  apply?: (model: Buffer) => void;
  /** Expected READ data, taken from the model when the request is sent. */
  readAt?: [number, number];
}

let dir: { path: string; remove: () => Promise<void> };
let server: NbdServer;
let socket: string;
const backend = new MemoryBackend({ size: SIZE, pageSize: 4096 });
const roBackend = new MemoryBackend({ size: 64 * KiB, readOnly: true });

before(async () => {
  dir = await scratchDir('nbd-fuzz');
  socket = join(dir.path, 'nbd.sock');
  server = new NbdServer({
    exports: { m: { backend }, ro: { backend: roBackend } },
    maxPayload: MAX_PAYLOAD,
    maxInFlightBytes: 1024 * KiB,
    handshakeTimeoutMs: 3000,
  });
  await server.listen({ path: socket });
});

after(async () => {
  await server.close();
  await dir.remove();
});

test(`fuzzed handshakes, options and requests (seed ${SEED}, ${CASES} cases)`, async () => {
  const source = new SeededRandom(SEED);
  const rand = () => source.next();
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const model = Buffer.alloc(SIZE);

  // The well-behaved client writes and verifies its own area the whole time.
  const steady = await NbdClient.connect({ path: socket }, { exportName: 'm' });
  let steadyOps = 0;
  let stopSteady = false;
  const steadyLoop = (async () => {
    while (!stopSteady) {
      const at = FUZZ_AREA + int(SIZE - FUZZ_AREA - 8 * KiB);
      const d = bytes(1 + int(8 * KiB));
      await steady.write(at, d);
      d.copy(model, at);
      assert.ok((await steady.read(at, d.length)).equals(d), 'steady client read back its write');
      steadyOps++;
      await sleep(1);
    }
  })();

  let cookieSeq = 1n;
  /** `area` is where in-range requests go; `exportSize` is where the export really ends. */
  const plan = (exportSize: number, area: number, readOnly: boolean): Planned => {
    const cookie = cookieSeq++;
    const kind = int(14);
    const inRange = (max: number) => {
      const len = 1 + int(max);
      return [int(area - len), len] as const;
    };
    const req = (flags: number, type: number, offset: bigint, length: number) =>
      requestHeader(flags, type, cookie, offset, length);
    const none = Buffer.alloc(0);
    const writeErr = readOnly ? NbdErrno.EPERM : 0;
    switch (kind) {
      case 0: {
        const [off, len] = inRange(16 * KiB);
        const d = bytes(len);
        const fua = rand() < 0.3 ? CommandFlag.FUA : 0;
        return {
          header: req(fua, Command.WRITE, BigInt(off), len),
          payload: d,
          expect: writeErr,
          apply: (m) => d.copy(m, off),
        };
      }
      case 1: {
        const [off, len] = inRange(32 * KiB);
        return {
          header: req(0, Command.READ, BigInt(off), len),
          payload: none,
          expect: 0,
          readAt: [off, len],
        };
      }
      case 2: // read past the end, or at absurd offsets
        return {
          header: req(
            0,
            Command.READ,
            pick([BigInt(exportSize), 2n ** 63n, 2n ** 64n - 1n, 2n ** 53n]),
            1 + int(4096),
          ),
          payload: none,
          expect: NbdErrno.EINVAL,
        };
      case 3: {
        const len = 1 + int(4096);
        const off = BigInt(exportSize - int(len)) + (rand() < 0.5 ? 0n : 2n ** 62n);
        return {
          header: req(0, Command.WRITE, off, len),
          payload: bytes(len),
          expect: readOnly ? NbdErrno.EPERM : NbdErrno.ENOSPC,
        };
      }
      case 4: {
        // A write over the payload limit is drained and refused.
        const len = MAX_PAYLOAD + 1 + int(4096);
        const expect = readOnly ? NbdErrno.EPERM : NbdErrno.EINVAL;
        return { header: req(0, Command.WRITE, 0n, len), payload: Buffer.alloc(len), expect };
      }
      case 5:
        return {
          header: req(0, Command.READ, 0n, MAX_PAYLOAD + 1 + int(2 ** 31)),
          payload: none,
          expect: NbdErrno.EINVAL,
        };
      case 6: // unknown command (CACHE is not offered either)
        return {
          header: req(
            0,
            pick([Command.CACHE, 8, 9, 255, 65535, 8 + int(60000)]),
            BigInt(int(exportSize)),
            int(4096),
          ),
          payload: none,
          expect: NbdErrno.EINVAL,
        };
      case 7: // undefined or misplaced command flags
        return {
          header: req(
            pick([1 << 5, 1 << 9, 1 << 15, CommandFlag.NO_HOLE, CommandFlag.REQ_ONE]),
            Command.READ,
            0n,
            512,
          ),
          payload: none,
          expect: NbdErrno.EINVAL,
        };
      case 8: {
        const [off, len] = inRange(64 * KiB);
        return {
          header: req(rand() < 0.5 ? CommandFlag.NO_HOLE : 0, Command.WRITE_ZEROES, BigInt(off), len),
          payload: none,
          expect: writeErr,
          apply: (m) => m.fill(0, off, off + len),
        };
      }
      case 9: {
        const [off, len] = inRange(64 * KiB);
        return {
          header: req(0, Command.TRIM, BigInt(off), len),
          payload: none,
          expect: writeErr,
          apply: (m) => m.fill(0, off, off + len),
        };
      }
      case 10:
        return { header: req(0, Command.FLUSH, 0n, 0), payload: none, expect: 0 };
      case 11:
        return {
          header: req(0, Command.FLUSH, BigInt(1 + int(100)), 0),
          payload: none,
          expect: NbdErrno.EINVAL,
        };
      case 12: {
        const [off, len] = inRange(area);
        return {
          header: req(rand() < 0.5 ? CommandFlag.REQ_ONE : 0, Command.BLOCK_STATUS, BigInt(off), len),
          payload: none,
          expect: readOnly ? NbdErrno.EINVAL : 0, // no context negotiated on ro
        };
      }
      default:
        return {
          header: req(0, Command.BLOCK_STATUS, BigInt(exportSize), 4096),
          payload: none,
          expect: NbdErrno.EINVAL,
        };
    }
  };

  const transmissionCase = async () => {
    const readOnly = rand() < 0.2;
    const exportSize = readOnly ? roBackend.size : SIZE;
    const area = readOnly ? roBackend.size : FUZZ_AREA;
    const peer = await RawPeer.connect(socket);
    await peer.enter(readOnly ? 'ro' : 'm', !readOnly);
    const requests = Array.from({ length: 1 + int(12) }, () => plan(exportSize, area, readOnly));
    const expected = new Map<bigint, Planned & { want?: Buffer }>();
    for (const r of requests) {
      const cookie = r.header.readBigUInt64BE(8);
      expected.set(cookie, r);
    }
    // Requests in a batch run concurrently and may be answered in any order:
    // a batch holds either one modifying request or reads, so the model stays exact.
    const batches: Planned[][] = [];
    let current: Planned[] = [];
    for (const r of requests) {
      if (r.apply && r.expect === 0 && current.some((c) => c.apply || c.readAt)) {
        batches.push(current);
        current = [];
      } else if (r.readAt && current.some((c) => c.apply && c.expect === 0)) {
        batches.push(current);
        current = [];
      }
      current.push(r);
    }
    batches.push(current);
    const log: string[] = [];
    for (const batch of batches) {
      log.push('--batch');
      for (const r of batch) {
        log.push(
          `send type=${r.header.readUInt16BE(6)} flags=${r.header.readUInt16BE(4)} off=${r.header.readBigUInt64BE(16)} len=${r.header.readUInt32BE(24)} expect=${r.expect}`,
        );
        // The read-only export is never written: it reads as zeroes.
        const source = readOnly ? Buffer.alloc(roBackend.size) : model;
        const want = r.readAt
          ? Buffer.from(source.subarray(r.readAt[0], r.readAt[0] + r.readAt[1]))
          : undefined;
        expected.get(r.header.readBigUInt64BE(8))!.want = want;
        peer.send(Buffer.concat([r.header, r.payload]));
      }
      for (let i = 0; i < batch.length; i++) {
        const got = await peer.reply();
        const r = expected.get(got.cookie);
        assert.ok(r, `reply for unknown cookie ${got.cookie}`);
        expected.delete(got.cookie);
        const type = r.header.readUInt16BE(6);
        assert.equal(got.errno, r.expect, `command ${type} flags ${r.header.readUInt16BE(4)}: errno`);
        if (r.expect === 0 && r.apply && !readOnly) r.apply(model);
        if (r.want && !got.data?.equals(r.want)) {
          let at = 0;
          while (got.data && at < r.want.length && got.data[at] === r.want[at]) at++;
          const real = await backend.read(r.readAt![0], r.readAt![1]);
          assert.fail(
            `${log.join('\n')}\nread ${r.readAt} differs from the model at +${at} (got ${got.data?.[at]}, model ${r.want[at]}, backend ${real[at]}, len ${got.data?.length})`,
          );
        }
        if (type === Command.BLOCK_STATUS && r.expect === 0)
          assert.deepEqual(got.chunks, [ReplyType.BLOCK_STATUS]);
      }
    }
    const ending = int(4);
    if (ending === 0) {
      peer.send(requestHeader(0, Command.DISC, 0n, 0n, 0));
      await peer.expectClosedByServer('DISC');
    } else if (ending === 1 && !readOnly) {
      // Disconnect in the middle of a write payload: nothing of it may land.
      const len = 1024 + int(64 * KiB);
      peer.send(requestHeader(0, Command.WRITE, cookieSeq++, BigInt(int(FUZZ_AREA - len)), len));
      peer.send(bytes(int(len)));
      await sleep(2);
      peer.socket.destroy();
    } else if (ending === 2) {
      peer.send(bytes(28)); // a request with a broken magic
      await peer.expectClosedByServer('a bad request magic');
    } else peer.socket.destroy();
  };

  const handshakeCase = async () => {
    const peer = await RawPeer.connect(socket);
    const kind = int(6);
    await peer.greet();
    if (kind === 0) {
      const flags = Buffer.alloc(4);
      flags.writeUInt32BE((4 + int(2 ** 31)) >>> 0);
      peer.send(flags);
      await peer.expectClosedByServer('unknown client flags');
      return;
    }
    if (kind === 1) {
      // A truncated handshake: part of a valid sequence, then we leave.
      const full = Buffer.concat([
        Buffer.from([0, 0, 0, 3]),
        optionRequest(Option.STRUCTURED_REPLY),
        optionRequest(Option.GO, Buffer.concat([lengthPrefixed('m'), Buffer.from([0, 0])])),
      ]);
      peer.send(full.subarray(0, int(full.length)));
      peer.socket.end();
      await peer.whenClosed;
      return;
    }
    peer.send(Buffer.from([0, 0, 0, 3]));
    if (kind === 2) {
      // Option data far beyond any sane size: dropped, not buffered.
      const h = optionRequest(Option.GO).subarray(0, 16);
      h.writeUInt32BE(0xffffffff, 12);
      peer.send(h);
      peer.send(bytes(1000));
      await peer.expectClosedByServer('a 4 GiB option');
      return;
    }
    if (kind === 3) {
      peer.send(bytes(16 + int(32))); // an option without IHAVEOPT
      await peer.expectClosedByServer('an option with a bad magic');
      return;
    }
    // Random options: each must get a well-formed final reply.
    for (let i = 0; i < 1 + int(6); i++) {
      const option = pick([
        0,
        4,
        11,
        12,
        99,
        2 ** 31,
        Option.GO,
        Option.INFO,
        Option.LIST,
        Option.STARTTLS,
        10,
        9,
        8,
      ]);
      const data = bytes(int(64));
      const answers = await peer.option(option, data);
      const final = answers.at(-1)!.type;
      if ([0, 4, 11, 12, 99, 2 ** 31].includes(option)) assert.equal(final, OptionReply.ERR_UNSUP);
      else if (option === Option.STARTTLS)
        assert.ok(final === OptionReply.ERR_INVALID || final === OptionReply.ERR_POLICY);
      else if (option === Option.GO || option === Option.INFO) {
        assert.ok(
          final === OptionReply.ERR_INVALID || final === OptionReply.ERR_UNKNOWN,
          `GO/INFO → ${final}`,
        );
      } else if (option === Option.LIST || option === Option.STRUCTURED_REPLY) {
        assert.equal(final, data.length === 0 ? OptionReply.ACK : OptionReply.ERR_INVALID);
      } else assert.ok(final >= 0x80000000 || final === OptionReply.ACK);
    }
    if (kind === 4) {
      assert.equal((await peer.option(Option.ABORT))[0]?.type, OptionReply.ACK);
      await peer.expectClosedByServer('ABORT');
    } else {
      // EXPORT_NAME cannot be refused politely: the server must hang up.
      peer.send(optionRequest(Option.EXPORT_NAME, Buffer.from(`no-such-${int(1000)}`)));
      await peer.expectClosedByServer('EXPORT_NAME of an unknown export');
    }
  };

  try {
    for (let i = 0; i < CASES; i++) {
      const transmission = rand() < 0.6;
      try {
        if (transmission) await transmissionCase();
        else await handshakeCase();
      } catch (err) {
        (err as Error).message =
          `case ${i} (${transmission ? 'transmission' : 'handshake'}): ${(err as Error).message}`;
        throw err;
      }
    }
  } finally {
    stopSteady = true;
    await steadyLoop.catch(() => {});
  }

  await steadyLoop;
  assert.ok(steadyOps > 10, `steady client made progress (${steadyOps} ops)`);
  for (let at = 0; at < SIZE; at += MAX_PAYLOAD) {
    const got = await steady.read(at, MAX_PAYLOAD);
    assert.ok(got.equals(model.subarray(at, at + MAX_PAYLOAD)), `export bytes at ${at} match the model`);
  }
  await steady.disconnect();

  // Everything the fuzzers opened is gone and no accounting is left behind.
  for (let i = 0; i < 200 && server.stats().connections > 0; i++) await sleep(10);
  assert.deepEqual(server.stats(), {
    connections: 0,
    inFlightRequests: 0,
    inFlightBytes: 0,
    bufferedBytes: 0,
  });
  assert.ok(process.memoryUsage().heapUsed < 256 * 1024 * 1024, 'heap stayed small');
});
