/**
 * Where a host keeps the files an operator may name: its storage folders
 * (`haven host --storage DIR`, default `<data>/images`). A disk source, and
 * the kernel and initrd of a direct kernel boot, typed by an operator must
 * lie inside one of them, so nothing an operator types makes the host agent
 * (often root) create or open files anywhere else, or have QEMU read them
 * into a guest. The vault checks the path as text when the machine is
 * registered; the host checks it again with symbolic links resolved.
 */
import { realpath } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { HavenError } from '../errors/index.ts';

export const defaultStorageFolders = (dataDir: string): string[] => [resolve(dataDir, 'images')];

/** Whether `path` (absolute, normalized) names something strictly inside `folder`. */
function isInside(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/** The refusal for a source outside every storage folder: it names the field and lists what is allowed. */
export function outsideStorageFolders(
  field: string,
  source: string,
  folders: readonly string[],
  why: string,
): HavenError {
  return new HavenError(
    'bad_request',
    `${field}: '${source.slice(0, 300)}' ${why}; disk images and boot files on this host must be inside ${
      folders.length > 0
        ? folders.join(', ')
        : 'a storage folder (the host reported none: haven host --storage DIR)'
    }`,
    { field, source: source.slice(0, 300), allowedFolders: [...folders] },
  );
}

/** The check as text (the vault's, at the request): absolute, normalized, inside a folder. */
export function checkSourcePath(field: string, source: string, folders: readonly string[]): void {
  if (!isAbsolute(source)) throw outsideStorageFolders(field, source, folders, 'is not an absolute path');
  if (source.includes('\0')) throw outsideStorageFolders(field, source, folders, 'holds a NUL character');
  // Lexical `..` escapes are normalized away here, so `/images/../etc/x` is judged as `/etc/x`.
  const normalized = resolve(source);
  if (!folders.some((folder) => isInside(normalized, resolve(folder)))) {
    throw outsideStorageFolders(field, source, folders, 'is not inside a storage folder');
  }
}

/** The deepest existing ancestor of `path`, with links resolved, and the rest appended. */
async function realpathOfNearest(path: string): Promise<string> {
  const rest: string[] = [];
  let current = path;
  for (;;) {
    try {
      return join(await realpath(current), ...rest.reverse());
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      const parent = dirname(current);
      if (parent === current) throw error;
      rest.push(current.slice(parent.length).replace(/^\//, ''));
      current = parent;
    }
  }
}

/** The host's check: the text check, then again with symbolic links resolved (no escape through a link). */
export async function checkSourceOnHost(
  field: string,
  source: string,
  folders: readonly string[],
): Promise<void> {
  checkSourcePath(field, source, folders);
  const real = await realpathOfNearest(resolve(source));
  const realFolders = await Promise.all(folders.map((folder) => realpathOfNearest(resolve(folder))));
  if (!realFolders.some((folder) => isInside(real, folder))) {
    throw outsideStorageFolders(field, source, folders, `leads through a symbolic link to '${real}'`);
  }
}

/** A direct kernel boot's files: the hypervisor reads both into the guest's memory. */
export interface BootFiles {
  kernel: string;
  initrd: string | null;
}

/** Each boot file with its field, e.g. `recoverySettings.boot.initrd`. */
function bootFields(field: string, boot: BootFiles): Array<[string, string]> {
  return boot.initrd === null
    ? [[`${field}.kernel`, boot.kernel]]
    : [
        [`${field}.kernel`, boot.kernel],
        [`${field}.initrd`, boot.initrd],
      ];
}

/** The vault's check of a kernel boot's files, as text (see checkSourcePath). */
export function checkBootPaths(
  field: string,
  boot: BootFiles | null | undefined,
  folders: readonly string[],
): void {
  if (!boot) return;
  for (const [name, path] of bootFields(field, boot)) checkSourcePath(name, path, folders);
}

/** The host's check of a kernel boot's files, with symbolic links resolved (see checkSourceOnHost). */
export async function checkBootOnHost(
  field: string,
  boot: BootFiles | null | undefined,
  folders: readonly string[],
): Promise<void> {
  if (!boot) return;
  for (const [name, path] of bootFields(field, boot)) await checkSourceOnHost(name, path, folders);
}
