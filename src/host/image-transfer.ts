/**
 * The two local copies between a machine's own image (a libvirt domain's
 * qcow2 or raw file, any format QEMU reads) and a replica's raw base, for
 * reprotect and failback of machines Haven does not serve: the image is read
 * into a seed for the reverse replica, and the replica's point is written
 * back into the image in place, keeping its format. Both run on the host
 * that has the image, with the machine off (QEMU's image lock refuses them
 * otherwise); nothing crosses the network.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Region } from '../disk/index.ts';
import { HavenError } from '../errors/index.ts';
import { NbdClient } from '../nbd/index.ts';

/** Image formats QEMU opens that an operator's domain may use (what `format` may be). */
const FORMAT = /^[a-z0-9]{2,16}$/;

function checkFormat(format: string): string {
  if (!FORMAT.test(format)) {
    throw new HavenError('validation_failed', `image format '${format.slice(0, 32)}' is not a format name`, {
      field: 'format',
    });
  }
  return format;
}

function runTool(tool: string, args: string[], what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      tool,
      args,
      { timeout: 3_600_000, env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 1 << 20 },
      (error, stdout, stderr) => {
        if (error === null) resolve(String(stdout));
        else {
          const why = String(stderr).trim() || error.message;
          const locked = /Failed to get .*lock/.test(why);
          reject(
            new HavenError(
              locked ? 'conflict' : 'internal',
              `${what}: ${why}${locked ? ' (a QEMU still runs on the image: stop its machine first)' : ''}`,
            ),
          );
        }
      },
    );
  });
}

/**
 * Converts `image` (its `format`) into a raw sparse file at `target`, whole
 * or not at all (written beside it, then renamed). Refused while a QEMU
 * holds the image's lock: a running machine's image is no consistent seed.
 */
export async function convertToRaw(
  image: string,
  format: string,
  target: string,
  sizeBytes: number,
): Promise<void> {
  const info = JSON.parse(
    await runTool(
      'qemu-img',
      ['info', '--output=json', '-f', checkFormat(format), image],
      `image '${image}' cannot be read`,
    ),
  ) as { 'virtual-size': number };
  if (info['virtual-size'] !== sizeBytes) {
    throw new HavenError(
      'conflict',
      `image '${image}' is ${info['virtual-size']} bytes, not the disk's ${sizeBytes}`,
      { image, sizeBytes: info['virtual-size'] },
    );
  }
  const partial = `${target}.partial`;
  await rm(partial, { force: true });
  await runTool(
    'qemu-img',
    ['convert', '-f', format, '-O', 'raw', image, partial],
    `image '${image}' cannot be copied into the replica`,
  );
  await rename(partial, target);
}

export interface WriteBackResult {
  /** Bytes read from both sides and compared. */
  comparedBytes: number;
  /** Bytes written into the image: the blocks that differed. */
  writtenBytes: number;
}

/** Whole blocks compared and written; the mirror's granularity, so a changed block costs one block. */
const BLOCK_BYTES = 64 << 10;
const CHUNK_BYTES = 1 << 20;

/**
 * Writes what `read` shows in `regions` into `image` in place, in its own
 * format (served by `qemu-nbd` on a private socket, which takes QEMU's image
 * lock: refused while the machine runs), only the blocks that differ, then
 * flushes. `onProgress` gets bytes compared so far.
 */
export async function writeIntoImage(params: {
  image: string;
  format: string;
  sizeBytes: number;
  regions: Region[];
  read: (offset: number, length: number) => Promise<Buffer>;
  socketDir: string;
  onProgress?: (comparedBytes: number) => void;
}): Promise<WriteBackResult> {
  const { image, sizeBytes, regions, read } = params;
  const socket = join(params.socketDir, `write-back-${process.pid}-${Date.now().toString(36)}.sock`);
  const server = spawn(
    'qemu-nbd',
    ['--format', checkFormat(params.format), '--socket', socket, '--cache', 'writeback', image],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  server.stderr?.on('data', (b: Buffer) => {
    if (stderr.length < 4096) stderr += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
  let client: NbdClient | null = null;
  try {
    client = await connectWhenServed(socket, exited, () => stderr, image);
    const result: WriteBackResult = { comparedBytes: 0, writtenBytes: 0 };
    for (const region of regions) {
      // Whole blocks around the region: the compare and the write stay aligned.
      let offset = Math.floor(region.offset / BLOCK_BYTES) * BLOCK_BYTES;
      const end = Math.min(sizeBytes, Math.ceil((region.offset + region.length) / BLOCK_BYTES) * BLOCK_BYTES);
      while (offset < end) {
        const length = Math.min(CHUNK_BYTES, end - offset);
        const [wanted, current] = await Promise.all([read(offset, length), client.read(offset, length)]);
        for (let at = 0; at < length; at += BLOCK_BYTES) {
          const n = Math.min(BLOCK_BYTES, length - at);
          const block = wanted.subarray(at, at + n);
          if (!block.equals(current.subarray(at, at + n))) {
            await client.write(offset + at, block);
            result.writtenBytes += n;
          }
        }
        offset += length;
        result.comparedBytes += length;
        params.onProgress?.(result.comparedBytes);
      }
    }
    await client.flush();
    return result;
  } finally {
    await client?.disconnect().catch(() => {});
    await stopServer(server, exited);
    await rm(socket, { force: true });
  }
}

async function connectWhenServed(
  socket: string,
  exited: Promise<number | null>,
  stderr: () => string,
  image: string,
): Promise<NbdClient> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (gone) {
      const why = stderr().trim();
      const locked = /Failed to get .*lock/.test(why);
      throw new HavenError(
        locked ? 'conflict' : 'internal',
        `image '${image}' cannot be opened for writing: ${why || 'qemu-nbd ended'}${locked ? ' (a QEMU still runs on the image: stop its machine first)' : ''}`,
        { image },
      );
    }
    try {
      return await NbdClient.connect({ path: socket });
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function stopServer(server: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null) return;
  server.kill('SIGTERM');
  const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
