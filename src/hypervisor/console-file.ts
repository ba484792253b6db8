import { open } from 'node:fs/promises';
import { HavenError } from '../errors/index.ts';
import type { ConsoleLog } from './hypervisor.ts';

// SeaBIOS clears the screen; CRs come with every serial line.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the escape character is what we strip
const TERMINAL_NOISE = /\x1b\[[0-9;?]*[A-Za-z]|\x1bc|\r/g;
// Enough for any tail an operator reads; older console output stays in the file.
const CONSOLE_READ_LIMIT = 1024 * 1024;

/** A machine's serial console file as lines (both drivers write the console to a file). */
export async function readConsoleFile(name: string, path: string, tail?: number): Promise<ConsoleLog> {
  if (tail !== undefined && !(Number.isInteger(tail) && tail >= 0)) {
    throw new HavenError('validation_failed', `console tail ${tail} must be a non-negative integer`, {
      field: 'tail',
    });
  }
  const text = await readTail(path, CONSOLE_READ_LIMIT);
  const lines = text.replace(TERMINAL_NOISE, '').split('\n');
  if (lines.at(-1) === '') lines.pop();
  return { name, lines: tail === undefined ? lines : lines.slice(lines.length - tail) };
}

async function readTail(path: string, limit: number): Promise<string> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, limit);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const text = buffer.toString('latin1');
    // A cut-off first line would be misleading; start at the next whole one.
    return size > limit ? text.slice(text.indexOf('\n') + 1) : text;
  } finally {
    await handle.close();
  }
}
