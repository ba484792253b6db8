/**
 * Who else writes a disk image. Haven replicates what its disk service (or an
 * armed mirror) sees; a process writing the image directly (a QEMU started by
 * hand, `dd`) makes a replica that is stale and then corrupt while everything
 * looks healthy. So before a disk is attached, and when replication is asked
 * for, the host looks for such writers:
 *
 * - every process with the image open for writing, from `/proc/PID/fd`
 *   (same file: device and inode) and `/proc/PID/fdinfo/FD` (access mode
 *   O_WRONLY or O_RDWR). This finds writers that take no lock too (`dd`,
 *   a script), but only while they hold the file open: a writer that opens
 *   and closes the image between two checks cannot be seen.
 * - QEMU's image locks (`qemu-img info` without `-U` fails with "Failed to
 *   get shared "write" lock"). They are open-file-description locks with no
 *   pid in /proc/locks, so the holder is named from /proc; the lock alone
 *   still refuses when the holder cannot be seen (another PID namespace).
 *
 * The calling process (the host agent, whose disk service opens the image)
 * is not a foreign writer.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, readlink, stat } from 'node:fs/promises';

export interface ImageWriter {
  pid: number;
  /** The command line, arguments joined by spaces (shortened). */
  command: string;
  /** QEMU's `-name` (guest name), when the writer is a QEMU that has one. */
  qemuName: string | null;
}

export interface ImageWriters {
  writers: ImageWriter[];
  /** A QEMU holds the image's write lock (whether or not its process was found above). */
  qemuWriteLock: boolean;
}

const O_ACCMODE = 0o3;
const COMMAND_MAX = 200;

/** QEMU's `-name guest=NAME,...` or `-name NAME,...`. */
function qemuNameOf(argv: string[]): string | null {
  const i = argv.indexOf('-name');
  const value = i >= 0 ? argv[i + 1] : undefined;
  if (value === undefined) return null;
  const guest = value.split(',').find((part) => part.startsWith('guest='));
  return guest !== undefined ? guest.slice('guest='.length) : (value.split(',')[0] ?? null);
}

async function writerOf(pid: number): Promise<ImageWriter> {
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''))
    .split('\0')
    .filter((a) => a !== '');
  const command = argv.join(' ').replace(/\s+/g, ' ');
  return {
    pid,
    command: command.length > COMMAND_MAX ? `${command.slice(0, COMMAND_MAX)}…` : command,
    qemuName: /qemu/.test(argv[0] ?? '') ? qemuNameOf(argv) : null,
  };
}

/** Whether the file descriptor was opened for writing (its fdinfo `flags`, octal). */
async function openForWriting(pid: number, fd: string): Promise<boolean> {
  const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
  const flags = /^flags:\s*([0-7]+)/m.exec(info)?.[1];
  return flags !== undefined && (Number.parseInt(flags, 8) & O_ACCMODE) !== 0;
}

/** Processes other than this one holding `imagePath` open for writing. */
export async function processesWriting(imagePath: string): Promise<ImageWriter[]> {
  const image = await stat(imagePath);
  const same = (s: { dev: number; ino: number; rdev: number }) =>
    image.isBlockDevice() ? s.rdev === image.rdev : s.dev === image.dev && s.ino === image.ino;
  const pids = (await readdir('/proc')).filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  const found: ImageWriter[] = [];
  for (const p of pids) {
    const pid = Number(p);
    // A process that ends meanwhile, or that this user may not read, is skipped.
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (!target.startsWith('/')) continue; // sockets, pipes, anonymous inodes
      const s = await stat(`/proc/${pid}/fd/${fd}`).catch(() => null);
      if (s === null || !same(s) || !(await openForWriting(pid, fd))) continue;
      found.push(await writerOf(pid));
      break;
    }
  }
  return found;
}

/** Whether a QEMU holds the image's write lock (false when qemu-img is not installed). */
export function qemuHoldsWriteLock(imagePath: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(
      'qemu-img',
      ['info', '--output=json', imagePath],
      { timeout: 10_000, env: { ...process.env, LC_ALL: 'C' } },
      (error, _stdout, stderr) => {
        resolve(error !== null && /Failed to get .*lock/.test(String(stderr)));
      },
    );
  });
}

/** Every writer of the image Haven can see besides itself (the image exists). */
export async function imageWriters(imagePath: string): Promise<ImageWriters> {
  const [writers, qemuWriteLock] = await Promise.all([
    processesWriting(imagePath),
    qemuHoldsWriteLock(imagePath),
  ]);
  return { writers, qemuWriteLock };
}

/** "pid 123 (qemu-system-x86_64 -name vm1 …), QEMU guest 'vm1'" and the like, for refusals. */
export function describeWriters(found: ImageWriters): string {
  const named = found.writers.map(
    (w) => `pid ${w.pid} (${w.command})${w.qemuName ? `, QEMU guest '${w.qemuName}'` : ''}`,
  );
  if (named.length === 0 && found.qemuWriteLock) {
    return 'a QEMU process that holds its write lock (not visible in /proc from here)';
  }
  return named.join('; ');
}

export const hasWriters = (found: ImageWriters): boolean => found.writers.length > 0 || found.qemuWriteLock;
