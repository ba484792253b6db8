import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Finding and ending a machine's QEMU process. QEMU runs daemonized, so it is
 * not our child: it is found through its pidfile, and a pid is only trusted
 * when its command line names the machine's own QMP socket (pids get reused).
 */

/** The process's argv, or undefined if it is gone or a zombie (dead, not yet reaped). */
async function processArgv(pid: number): Promise<string[] | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The state follows the parenthesised command name, which may itself hold ')'.
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') return undefined;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    const argv = cmdline.split('\0');
    if (argv.at(-1) === '') argv.pop();
    return argv.length > 0 ? argv : undefined;
  } catch {
    return undefined;
  }
}

function argvMentions(argv: readonly string[], marker: string): boolean {
  return argv.some((arg) => arg.includes(marker));
}

/** The pid in the pidfile, if that process is alive and is QEMU for `marker` (the machine's QMP socket path). */
export async function livePid(pidFile: string, marker: string): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number.parseInt(await readFile(pidFile, 'utf8'), 10);
  } catch {
    return undefined;
  }
  if (!(pid > 0)) return undefined;
  const argv = await processArgv(pid);
  return argv && argvMentions(argv, marker) ? pid : undefined;
}

/** Every live QEMU process whose command line mentions `marker`: the last word on whether a machine runs. */
export async function findQemuProcesses(marker: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const argv = await processArgv(pid);
    if (argv?.[0]?.includes('qemu-system') && argvMentions(argv, marker)) found.push(pid);
  }
  return found;
}

export async function isAlive(pid: number): Promise<boolean> {
  return (await processArgv(pid)) !== undefined;
}

/** Polls until the process is gone; true if it went within the time. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!(await isAlive(pid))) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(50, Math.max(1, deadline - Date.now())));
  }
}

export function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** The group ids a process runs with (its own and supplementary), or undefined when it is gone. */
export async function processGroups(pid: number): Promise<number[] | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  if (status === undefined) return undefined;
  const field = (name: string) =>
    (new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '').split(/\s+/).filter(Boolean).map(Number);
  return [...field('Gid').slice(0, 1), ...field('Groups')];
}
