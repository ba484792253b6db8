/**
 * A recovery point's disk copied to a file where the CLI runs, from a view the
 * vault opened (TLS with the view's pre-shared key): raw written sparse (holes
 * stay holes), or qcow2 through `qemu-img convert` reading the same export.
 */
import { spawn } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import { HavenError } from '../errors/index.ts';
import { BlockState, NbdClient } from '../nbd/index.ts';
import { type PskExport, qemuImgArgs } from '../nbd/psk-access.ts';
import { formatBytes } from '../text/human-units.ts';

export type ExportFormat = 'raw' | 'qcow2';

/** Bytes read per request: well under the server's 32 MiB limit. */
const CHUNK = 4 << 20;

export interface ExportProgress {
  doneBytes: number;
  totalBytes: number;
  /** Bytes that held data (the rest were holes, not read). */
  dataBytes: number;
}

/** Copies the export into a sparse raw file; reports progress after each chunk; checks the size at the end. */
export async function exportRaw(
  exp: PskExport,
  key: Buffer,
  out: string,
  onProgress: (p: ExportProgress) => void,
): Promise<ExportProgress> {
  const url = new URL(exp.uri);
  const client = await NbdClient.connect(
    { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port) },
    {
      exportName: decodeURIComponent(url.pathname.slice(1)),
      tls: { psk: { identity: exp.identity, key } },
    },
  );
  const file = await open(out, 'w');
  const progress: ExportProgress = { doneBytes: 0, totalBytes: client.size, dataBytes: 0 };
  try {
    await file.truncate(client.size);
    let offset = 0;
    while (offset < client.size) {
      const length = Math.min(CHUNK, client.size - offset);
      const extents = await client.blockStatus(offset, length);
      if (extents.length === 0) throw new HavenError('internal', `the view reported no extent at ${offset}`);
      for (const e of extents) {
        const end = Math.min(e.offset + e.length, offset + length);
        if ((e.flags & BlockState.ZERO) === 0 && end > e.offset) {
          const data = await client.read(e.offset, end - e.offset);
          await file.write(data, 0, data.length, e.offset);
          progress.dataBytes += data.length;
        }
        offset = end;
        if (offset >= client.size || end < e.offset + e.length) break;
      }
      progress.doneBytes = offset;
      onProgress({ ...progress });
    }
    await file.sync();
  } finally {
    await file.close();
    await client.disconnect().catch(() => {});
  }
  await checkSize(out, progress.totalBytes, (await stat(out)).size);
  return progress;
}

/** Converts the export to qcow2 with qemu-img (its own progress on stderr); checks the virtual size. */
export async function exportQcow2(
  exp: PskExport,
  pskDir: string,
  out: string,
  sizeBytes: number,
  write: (text: string) => void,
): Promise<void> {
  await runQemuImg(['convert', '-p', ...qemuImgArgs(exp, pskDir), '-O', 'qcow2', out], write);
  const info = JSON.parse(await runQemuImg(['info', '--output=json', out], () => {})) as {
    'virtual-size': number;
  };
  await checkSize(out, sizeBytes, info['virtual-size']);
}

async function checkSize(out: string, expected: number, actual: number): Promise<void> {
  if (actual !== expected) {
    throw new HavenError(
      'internal',
      `the export in '${out}' is ${formatBytes(actual)} (${actual} bytes), not the disk's ${expected} bytes: do not use it`,
      { out, expected, actual },
    );
  }
}

function runQemuImg(args: string[], progress: (text: string) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('qemu-img', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      progress(b.toString());
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    child.on('error', (error) =>
      reject(
        new HavenError(
          'not_available',
          `qcow2 export needs qemu-img on this machine (Debian: qemu-utils): ${error.message}; --format raw needs nothing`,
        ),
      ),
    );
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new HavenError('internal', `qemu-img ${args[0]} failed (exit ${code}): ${stderr.trim()}`));
    });
  });
}
