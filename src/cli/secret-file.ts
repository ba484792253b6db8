import { readFile } from 'node:fs/promises';
import { HavenError } from '../errors/index.ts';

/**
 * A secret an option names the file of (so it never shows in `ps` or a shell
 * history): the file's text without its final line ending; a file that cannot
 * be read or is empty is refused, naming the option.
 */
export async function readSecretFile(file: string, option: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch((error: Error) => {
    throw new HavenError('bad_request', `--${option}: cannot read ${file}: ${error.message}`, {
      field: option,
    });
  });
  const secret = text.replace(/\r?\n$/, '');
  if (secret.trim() === '')
    throw new HavenError('bad_request', `--${option}: ${file} is empty`, { field: option });
  return secret;
}
