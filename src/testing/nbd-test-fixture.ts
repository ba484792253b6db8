/**
 * Test-only helpers: run external NBD peers and tools (fio and friends) and
 * make scratch directories. Not exported from index.ts.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  /** A scratch directory for tools that leave files in their working directory (fio). */
  cwd?: string;
}

/** Runs a program to completion; never throws on a non-zero exit (tests assert on `code`). */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

/** Like `run`, but fails with the tool's stderr when it exits non-zero. */
export async function runOk(cmd: string, args: string[], options: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

export async function scratchDir(prefix: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `haven-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export function nbdUnixUri(socket: string, exportName: string): string {
  return `nbd+unix:///${exportName}?socket=${socket}`;
}

/** `nbdinfo --map` of an export as [offset, length, type] triples (type 3: hole and zero). */
export async function nbdinfoMap(uri: string, options: RunOptions = {}): Promise<number[][]> {
  const map = JSON.parse(await runOk('nbdinfo', ['--map', '--json', uri], options));
  return map.map((e: { offset: number; length: number; type: number }) => [e.offset, e.length, e.type]);
}

/**
 * fio's random read/write job with crc32c verification against an NBD export;
 * the result's stdout holds fio's JSON report after libnbd's notice.
 */
export function runFioVerify(
  uri: string,
  options: { name: string; timeoutMs: number; cwd?: string },
): Promise<RunResult> {
  return run(
    'fio',
    [
      `--name=${options.name}`,
      '--ioengine=nbd',
      `--uri=${uri}`,
      '--rw=randrw',
      '--bs=4k',
      '--size=16m',
      '--iodepth=16',
      '--verify=crc32c',
      '--verify_fatal=1',
      // fio would leave a verify-state file in its working directory.
      '--verify_state_save=0',
      '--output-format=json',
    ],
    { timeoutMs: options.timeoutMs, cwd: options.cwd },
  );
}
