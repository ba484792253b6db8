import { spawn } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BoundedOutput } from '../text/bounded-output.ts';
import type { ScriptUser } from './script-user.ts';

/** A registered script's content, read once: what runs is exactly what was hashed. */
export interface LoadedScript {
  name: string;
  content: Buffer;
  sha256: string;
}

/** The PATH scripts get: the system's programs, nothing from the vault's environment. */
export const SCRIPT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Output kept from the start and from the end of a run; what lies between is cut. */
export const SCRIPT_OUTPUT_HEAD_BYTES = 32 * 1024;
export const SCRIPT_OUTPUT_TAIL_BYTES = 32 * 1024;

export interface ScriptResult {
  exitCode: number | null;
  /** The signal that ended it (SIGKILL after a timeout or a cancel). */
  signal: string | null;
  timedOut: boolean;
  /** Ended because the job was cancelled. */
  cancelled: boolean;
  durationMs: number;
  /** stdout and stderr interleaved: the first and last bytes, with a line saying how much was cut between. */
  output: string;
  outputBytes: number;
  outputTruncated: boolean;
}

export interface ScriptRequest {
  script: LoadedScript;
  user: ScriptUser;
  /** HAVEN_* variables; the only ones the script sees besides PATH, HOME, TMPDIR and LANG. */
  env: Record<`HAVEN_${string}`, string>;
  timeoutMs: number;
  signal?: AbortSignal;
  headBytes?: number;
  tailBytes?: number;
  /**
   * Run inside this network namespace (a name under /run/netns): entered as
   * root with nsenter, then setpriv drops to `user` (who must be set: the
   * caller runs as root) before the script starts.
   */
  netns?: string;
  /**
   * Ends what left the script's process group (setsid) and would hold its
   * output open, e.g. every process in its namespace; called whenever the
   * group is killed (time limit, cancel, the script's exit).
   */
  killStragglers?: () => Promise<void>;
}

/**
 * Runs a registered script: as `request.user`, with a clean environment, in a
 * fresh working folder outside the vault's data, in its own process group
 * that is killed at the time limit, on cancel, and when the script exits (so
 * nothing it started in the background outlives it), with bounded output.
 * The script runs from a copy of the content that was read and hashed.
 */
export async function runScript(request: ScriptRequest): Promise<ScriptResult> {
  const { user } = request;
  const root = await mkdtemp(join(tmpdir(), 'haven-script-'));
  try {
    const file = join(root, request.script.name);
    const work = join(root, 'work');
    await writeFile(file, request.script.content, { mode: 0o500 });
    await mkdir(work, { mode: 0o700 });
    if (user.uid !== undefined && user.gid !== undefined) {
      // The script's user may enter the run folder and run the copy, and write only in work/.
      await chmod(root, 0o711);
      await chown(file, 0, user.gid);
      await chmod(file, 0o550);
      await chown(work, user.uid, user.gid);
    }
    return await spawnBounded(file, work, request);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

function spawnBounded(file: string, work: string, request: ScriptRequest): Promise<ScriptResult> {
  const output = new BoundedOutput(
    request.headBytes ?? SCRIPT_OUTPUT_HEAD_BYTES,
    request.tailBytes ?? SCRIPT_OUTPUT_TAIL_BYTES,
  );
  const started = performance.now();
  const { user, netns } = request;
  // Entering a namespace needs root: nsenter runs as root, setpriv then drops to the user for good.
  const [command, args] =
    netns === undefined
      ? [file, []]
      : [
          'nsenter',
          [
            `--net=/run/netns/${netns}`,
            '--',
            'setpriv',
            `--reuid=${user.uid}`,
            `--regid=${user.gid}`,
            '--clear-groups',
            '--no-new-privs',
            '--',
            file,
          ],
        ];
  if (netns !== undefined && (user.uid === undefined || user.gid === undefined || user.uid === 0))
    return Promise.reject(
      new Error(`a script run in namespace ${netns} needs an unprivileged user to switch to`),
    );
  const switchUser = netns === undefined && user.uid !== undefined && user.gid !== undefined;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: work,
      env: { PATH: SCRIPT_PATH, HOME: work, TMPDIR: work, LANG: 'C.UTF-8', ...request.env },
      ...(switchUser ? { uid: user.uid, gid: user.gid } : {}),
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (chunk: Buffer) => output.add(chunk));
    child.stderr.on('data', (chunk: Buffer) => output.add(chunk));
    let timedOut = false;
    let cancelled = false;
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      void request.killStragglers?.().catch(() => {});
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, request.timeoutMs);
    const onAbort = () => {
      cancelled = true;
      killGroup();
    };
    request.signal?.addEventListener('abort', onAbort, { once: true });
    // What it left running in its group would hold the pipes open: end it with the script.
    child.on('exit', killGroup);
    child.on('error', (error) => {
      clearTimeout(timer);
      request.signal?.removeEventListener('abort', onAbort);
      reject(error);
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      request.signal?.removeEventListener('abort', onAbort);
      const { output: text, truncated } = output.result();
      resolve({
        exitCode,
        signal,
        timedOut,
        cancelled,
        durationMs: Math.round(performance.now() - started),
        output: text,
        outputBytes: output.total,
        outputTruncated: truncated,
      });
    });
  });
}
