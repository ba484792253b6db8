/**
 * Test helpers for the disk service tests: run external tools in a scratch
 * working directory, read a journal and rebuild a disk from it as a replica
 * would. Not exported from index.ts.
 */
import { spawn } from 'node:child_process';
import { crc32 } from 'node:zlib';
import { listJournalRecords } from '../disk/journal-reader.ts';
import type { JournalRecord } from '../disk/journal-record.ts';

export async function readJournal(dir: string, fromSeq = 0): Promise<JournalRecord[]> {
  const out: JournalRecord[] = [];
  for await (const r of listJournalRecords(dir, fromSeq)) out.push(r);
  return out;
}

/** Applies the records to a copy of `base`. */
export function replay(base: Buffer, records: readonly JournalRecord[]): Buffer {
  const disk = Buffer.from(base);
  for (const r of records) {
    if (r.kind === 'write') r.data?.copy(disk, r.offset);
    else if (r.kind === 'trim' || r.kind === 'zero') disk.fill(0, r.offset, r.offset + r.length);
  }
  return disk;
}

/** A record as comparable text: kind, offset, length and the data's checksum. */
export function describeRecord(r: JournalRecord): string {
  if (r.kind === 'flush') return 'flush';
  if (r.kind === 'marker') return `marker ${r.marker?.type} ${r.marker?.id}`;
  return `${r.kind} ${r.offset} ${r.length}${r.data === undefined ? '' : ` crc=${crc32(r.data)}`}`;
}

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a tool to completion in `cwd` (a scratch directory: fio and friends
 * leave files in their working directory); never throws on a non-zero exit.
 */
export function runTool(
  cmd: string,
  args: string[],
  options: { cwd: string; timeoutMs?: number; env?: Record<string, string> },
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...options.env },
    });
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

/** Like runTool, but fails with the tool's output when it exits non-zero. */
export async function runToolOk(
  cmd: string,
  args: string[],
  options: { cwd: string; timeoutMs?: number },
): Promise<string> {
  const r = await runTool(cmd, args, options);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}
