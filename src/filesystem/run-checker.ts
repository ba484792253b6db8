import { spawn } from 'node:child_process';
import { HavenError } from '../errors/index.ts';
import { BoundedOutput } from '../text/bounded-output.ts';

/** Output of a checker kept from its start and its end: the evidence of a check. */
export const CHECKER_OUTPUT_HEAD_BYTES = 16 * 1024;
export const CHECKER_OUTPUT_TAIL_BYTES = 16 * 1024;

export interface CheckerRun {
  /** null when it was killed (the check's time limit). */
  exitCode: number | null;
  /** stdout and stderr interleaved, bounded. */
  output: string;
  outputTruncated: boolean;
  aborted: boolean;
}

/**
 * Runs a filesystem tool (dumpe2fs, e2fsck, xfs_repair...) to its end, in its
 * own process group that is killed when `signal` aborts, so nothing it
 * started outlives the check. A missing tool is `not_available` naming the
 * Debian package; its exit code is returned, never thrown: it is the verdict.
 */
export function runChecker(
  command: string,
  args: readonly string[],
  options: { signal?: AbortSignal; debianPackage: string },
): Promise<CheckerRun> {
  const output = new BoundedOutput(CHECKER_OUTPUT_HEAD_BYTES, CHECKER_OUTPUT_TAIL_BYTES);
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      resolve({ exitCode: null, output: '', outputTruncated: false, aborted: true });
      return;
    }
    const child = spawn(command, args, {
      env: { ...process.env, LC_ALL: 'C' },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (chunk: Buffer) => output.add(chunk));
    child.stderr.on('data', (chunk: Buffer) => output.add(chunk));
    let aborted = false;
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const onAbort = () => {
      aborted = true;
      killGroup();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('exit', killGroup);
    child.on('error', (error: NodeJS.ErrnoException) => {
      options.signal?.removeEventListener('abort', onAbort);
      if (error.code === 'ENOENT') {
        reject(
          new HavenError('not_available', `'${command}' is not installed on this host`, {
            command,
            install: options.debianPackage,
          }),
        );
        return;
      }
      reject(error);
    });
    child.on('close', (exitCode) => {
      options.signal?.removeEventListener('abort', onAbort);
      const { output: text, truncated } = output.result();
      resolve({ exitCode: aborted ? null : exitCode, output: text, outputTruncated: truncated, aborted });
    });
  });
}
