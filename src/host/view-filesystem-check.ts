/**
 * `replica.checkFilesystems`: every filesystem of a writable view checked on
 * the recovery host without booting it. Each disk's NBD export is seen as a
 * file through nbdfuse (a FUSE mount under the host's run folder), so the
 * checkers read it, and replay journals into the view's overlay, never into
 * the replica. Nothing stays mounted or running after the check, whatever
 * ends it; what a crashed agent left is swept at its next start.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HavenError } from '../errors/index.ts';
import {
  checkDiskFilesystems,
  checkVmBoot,
  type FilesystemCheck,
  type VmBootCheck,
} from '../filesystem/index.ts';
import type { FilesystemCheckReport, PointView } from './host-services.ts';

/** How long a check runs when the caller names no limit, and the longest it may. */
export const DEFAULT_FILESYSTEM_CHECK_TIMEOUT_MS = 10 * 60_000;
export const MAX_FILESYSTEM_CHECK_TIMEOUT_MS = 6 * 60 * 60_000;
/** Where the disks of checked views are mounted during a check; swept at the agent's start. */
export function filesystemCheckDirOf(dataDir: string): string {
  return join(dataDir, 'run', 'fscheck');
}

/** How long nbdfuse may take to connect and mount. */
const MOUNT_WAIT_MS = 15_000;

export async function checkViewFilesystems(
  view: PointView,
  options: { workDir: string; timeoutMs: number; vmBoot?: boolean },
): Promise<FilesystemCheckReport> {
  const started = performance.now();
  const signal = AbortSignal.timeout(options.timeoutMs);
  await mkdir(options.workDir, { recursive: true, mode: 0o700 });
  const filesystems: FilesystemCheck[] = [];
  let vmBoot: VmBootCheck | null = null;
  for (const [index, disk] of view.disks.entries()) {
    const mount = join(options.workDir, `${view.viewId}.${disk.diskId}`);
    const fuse = await mountExport(mount, disk.nbdUri);
    try {
      // Before the checkers replay journals: what a VM started from the point would find.
      if (options.vmBoot && index === 0) vmBoot = await checkVmBoot(join(mount, 'nbd'));
      filesystems.push(
        ...(await checkDiskFilesystems({
          diskId: disk.diskId,
          file: join(mount, 'nbd'),
          sizeBytes: disk.sizeBytes,
          signal,
          timeoutMs: options.timeoutMs,
        })),
      );
    } finally {
      await unmount(mount, fuse);
    }
  }
  return {
    viewId: view.viewId,
    machineId: view.machineId,
    pointId: view.pointId,
    filesystems,
    timedOut: signal.aborted,
    durationMs: Math.round(performance.now() - started),
    ...(options.vmBoot ? { vmBoot } : {}),
  };
}

/** Unmounts and removes what checks of a crashed agent left in `workDir`: mounts first, then the folders. */
export async function sweepFilesystemChecks(workDir: string): Promise<void> {
  for (const mount of await mountsUnder(workDir)) await unmount(mount, null);
  await rm(workDir, { recursive: true, force: true });
}

async function mountExport(mount: string, nbdUri: string): Promise<ChildProcess> {
  await mkdir(mount, { recursive: true, mode: 0o700 });
  const pidFile = `${mount}.pid`;
  await rm(pidFile, { force: true });
  const fuse = spawn('nbdfuse', ['-P', pidFile, mount, nbdUri], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  fuse.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  const failed = new Promise<Error>((resolve) => {
    fuse.once('error', resolve);
    fuse.once('exit', (code) => resolve(new Error(`nbdfuse exited with ${code}: ${stderr.trim()}`)));
  });
  // nbdfuse writes its pid file once the mount is served.
  const deadline = Date.now() + MOUNT_WAIT_MS;
  let outcome: Error | null = null;
  while (Date.now() < deadline) {
    outcome = await Promise.race([failed, sleep(25).then(() => null)]);
    if (outcome !== null) break;
    if (
      await stat(pidFile).then(
        () => true,
        () => false,
      )
    )
      return fuse;
  }
  await unmount(mount, fuse);
  if ((outcome as NodeJS.ErrnoException | null)?.code === 'ENOENT') {
    throw new HavenError('not_available', `'nbdfuse' is not installed on this host`, {
      command: 'nbdfuse',
      install: 'nbdfuse',
    });
  }
  throw new HavenError('internal', `the view's disk could not be mounted at '${mount}' to check it`, {
    nbdUri,
    error: outcome?.message ?? `nbdfuse did not mount within ${MOUNT_WAIT_MS} ms: ${stderr.trim()}`,
  });
}

/**
 * Unmounts (lazily when a tool still holds the file: the kernel lets go when it
 * does), waits for nbdfuse to end (it ends with its mount), removes the folder.
 */
async function unmount(mount: string, fuse: ChildProcess | null): Promise<void> {
  if ((await mountsUnder(mount, true)).length > 0) {
    const plain = await run('umount', [mount]);
    if (plain !== 0) await run('umount', ['-l', mount]);
  }
  if (fuse !== null && fuse.exitCode === null && fuse.signalCode === null) {
    const exited = new Promise<void>((resolve) => fuse.once('exit', () => resolve()));
    const ended = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
    if (!ended) {
      fuse.kill('SIGKILL');
      await exited;
    }
  }
  await stopStaleNbdfuse(`${mount}.pid`);
  await rm(`${mount}.pid`, { force: true });
  await rm(mount, { recursive: true, force: true }).catch(() => undefined);
}

/** An nbdfuse a crashed agent started (its pid file names it): ended, if it is still that program. */
async function stopStaleNbdfuse(pidFile: string): Promise<void> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isSafeInteger(pid) || pid <= 1) return;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.startsWith('nbdfuse\0') || !cmdline.includes(pidFile)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Mount points at or under `dir` (`exact`: only `dir` itself), from the kernel's table. */
async function mountsUnder(dir: string, exact = false): Promise<string[]> {
  const table = await readFile('/proc/self/mounts', 'utf8');
  return table
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((m): m is string => m !== undefined)
    .map((m) =>
      m.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))),
    )
    .filter((m) => m === dir || (!exact && m.startsWith(`${dir}/`)))
    .sort()
    .reverse();
}

function run(command: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: 'ignore' });
    child.on('error', () => resolve(-1));
    child.on('close', (code) => resolve(code ?? -1));
  });
}
