import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The pinned Node running the tests; children run .ts the same way. */
export const NODE = process.execPath;
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Child {
  process: ChildProcess;
  /** Resolves with the first stdout line that parses as JSON. */
  firstJson<T>(timeoutMs?: number): Promise<T>;
  output(): string;
  /** Resolves when the process has exited. */
  exited: Promise<number | null>;
}

/** Collects a piped child's stdout and stderr together, and its exit. */
export function collectOutput(child: ChildProcess): Pick<Child, 'output' | 'exited'> {
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  return { output: () => out, exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
}

/** Spawns a TypeScript entry point of this repo under the test's Node, collecting its output. */
export function spawnTs(entry: string, args: string[], env: Record<string, string> = {}): Child {
  const child = spawn(NODE, [entry, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { output, exited } = collectOutput(child);
  return {
    process: child,
    output,
    exited,
    firstJson: <T>(timeoutMs = 30_000) =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no JSON line from ${entry} in ${timeoutMs} ms:\n${output()}`)),
          timeoutMs,
        );
        const check = () => {
          for (const line of output().split('\n')) {
            if (!line.startsWith('{')) continue;
            try {
              const value = JSON.parse(line) as T;
              clearTimeout(timer);
              child.stdout!.off('data', check);
              resolve(value);
              return;
            } catch {}
          }
        };
        child.stdout!.on('data', check);
        void exited.then((code) => reject(new Error(`${entry} exited with ${code}:\n${output()}`)));
        check();
      }),
  };
}

/** A port that was free a moment ago (for processes that must come back on the same address). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Runs the haven CLI to completion and returns its exit code and output. */
export async function runHaven(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { execFile } = await import('node:child_process');
  return new Promise((resolve) => {
    execFile(
      NODE,
      ['src/cli/main.ts', ...args],
      { cwd: REPO_ROOT, env: { ...process.env, ...env } },
      (error, stdout, stderr) => {
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}
