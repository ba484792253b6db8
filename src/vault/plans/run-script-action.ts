import { spawn } from 'node:child_process';

export interface ScriptRun {
  exitCode: number | null;
  /** The signal that ended it (SIGKILL after a timeout). */
  signal: string | null;
  timedOut: boolean;
  durationMs: number;
  /** stdout and stderr interleaved, the last `maxOutputBytes` of them. */
  output: string;
}

export interface ScriptRequest {
  command: string;
  env: Record<string, string>;
  cwd: string;
  timeoutMs: number;
  signal?: AbortSignal;
  maxOutputBytes?: number;
}

/**
 * Runs a plan's script action on the vault host with `sh -c`. The script runs
 * in its own process group so a timeout or a cancel kills whatever it
 * started, not just the shell.
 */
export function runScriptAction(request: ScriptRequest): Promise<ScriptRun> {
  const max = request.maxOutputBytes ?? 64 * 1024;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', request.command], {
      cwd: request.cwd,
      env: { ...process.env, ...request.env },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = Buffer.alloc(0);
    const collect = (chunk: Buffer) => {
      output = Buffer.concat([output, chunk]);
      if (output.length > max) output = output.subarray(output.length - max);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let timedOut = false;
    const kill = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, request.timeoutMs);
    request.signal?.addEventListener('abort', kill, { once: true });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      request.signal?.removeEventListener('abort', kill);
      resolve({
        exitCode,
        signal,
        timedOut,
        durationMs: Math.round(performance.now() - started),
        output: output.toString('utf8'),
      });
    });
  });
}
