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

/** Spawns a TypeScript entry point of this repo under the test's Node, collecting its output. */
export function spawnTs(entry: string, args: string[], env: Record<string, string> = {}): Child {
  const child = spawn(NODE, [entry, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    process: child,
    output: () => out,
    exited,
    firstJson: <T>(timeoutMs = 30_000) =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no JSON line from ${entry} in ${timeoutMs} ms:\n${out}`)),
          timeoutMs,
        );
        const check = () => {
          for (const line of out.split('\n')) {
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
        void exited.then((code) => reject(new Error(`${entry} exited with ${code}:\n${out}`)));
        check();
      }),
  };
}
