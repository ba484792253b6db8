import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { RegisteredScript } from '../../domain/model.ts';
import type { KnownScripts } from '../../domain/recovery-plan-validation.ts';
import { HavenError } from '../../errors/index.ts';
import type { LoadedScript } from '../../scripts/index.ts';

/** What a plan's action may name: plain file names, no path. */
const SCRIPT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/**
 * The scripts plans may run: executable files in one folder that only the
 * vault's user (root) can change. An admin registers a script by putting it
 * there; operators only name it. A file or folder that someone else could
 * have written is listed with its problem and never run.
 */
export class ScriptRegistry {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  async list(): Promise<RegisteredScript[]> {
    const dirProblem = await this.#dirProblem();
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((name) => SCRIPT_NAME.test(name)).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const scripts: RegisteredScript[] = [];
    for (const name of names) {
      let info: Stats;
      try {
        info = await lstat(join(this.dir, name));
      } catch {
        continue; // removed meanwhile
      }
      const problem = dirProblem ?? fileProblem(info);
      let sha256: string | null = null;
      if (!problem) {
        try {
          sha256 = (await this.load(name)).sha256;
        } catch {
          continue; // changed meanwhile
        }
      }
      scripts.push({
        name,
        sizeBytes: info.size,
        modifiedAt: info.mtime.toISOString(),
        sha256,
        problem,
      });
    }
    return scripts;
  }

  /** The names plans may use now, for plan validation. */
  async known(): Promise<KnownScripts> {
    const usable = (await this.list()).filter((s) => s.problem === null).map((s) => s.name);
    return { names: new Set(usable), dir: this.dir };
  }

  /** Reads a script for a run, checking the open file itself (no symlink, owner, mode). */
  async load(name: string): Promise<LoadedScript> {
    const refuse = (why: string) =>
      new HavenError('conflict', `Script '${name}' cannot be run: ${why}`, { script: name, dir: this.dir });
    if (!SCRIPT_NAME.test(name)) throw refuse('not a script name');
    const dirProblem = await this.#dirProblem();
    if (dirProblem) throw refuse(dirProblem);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(join(this.dir, name), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw refuse(
        code === 'ENOENT'
          ? `it is not registered in ${this.dir}`
          : code === 'ELOOP'
            ? 'it is a symbolic link'
            : String(error),
      );
    }
    try {
      const problem = fileProblem(await handle.stat());
      if (problem) throw refuse(problem);
      const content = await handle.readFile();
      return { name, content, sha256: createHash('sha256').update(content).digest('hex') };
    } finally {
      await handle.close();
    }
  }

  async #dirProblem(): Promise<string | null> {
    let info: Stats;
    try {
      info = await stat(this.dir);
    } catch {
      return null; // no folder: no scripts (list says so by being empty)
    }
    if (!info.isDirectory()) return `${this.dir} is not a folder`;
    return writableByOthers(info, `the folder ${this.dir}`);
  }
}

/** Only the vault's user or root may have written it. */
function writableByOthers(info: Stats, what: string): string | null {
  const vaultUid = process.getuid?.() ?? 0;
  if (info.uid !== 0 && info.uid !== vaultUid)
    return `${what} belongs to uid ${info.uid}, not to root or the vault's user`;
  if ((info.mode & 0o022) !== 0)
    return `${what} can be changed by other users (mode ${(info.mode & 0o777).toString(8)}); chmod go-w`;
  return null;
}

function fileProblem(info: Stats): string | null {
  if (info.isSymbolicLink()) return 'it is a symbolic link';
  if (!info.isFile()) return 'it is not a regular file';
  if ((info.mode & 0o100) === 0) return 'it is not executable (chmod u+x)';
  return writableByOthers(info, 'the file');
}
