import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

/** A state file's text, or null when it does not exist (yet): the one case a reader treats as "fresh". */
export async function readOptionalText(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** The same, read synchronously: for a tiny state file a constructor must know before it answers anything. */
export function readOptionalTextSync(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}
