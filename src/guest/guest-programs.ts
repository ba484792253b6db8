import { chmod, copyFile, lstat, mkdir, readFile, readlink, symlink } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { HavenError } from '../errors/index.ts';
import { readElfDynamic } from './elf-dynamic.ts';

/** A program the guest runs, copied out of an extracted Debian package. */
export interface GuestProgram {
  /** Debian package that ships it. */
  package: string;
  /** Its path inside the package, e.g. `sbin/mdadm`. */
  path: string;
}

/** Where Debian keeps shared libraries; the loader searches them without ld.so.cache. */
const LIBRARY_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu', 'lib', 'usr/lib'];
const GUEST_LIBRARY_DIR = 'lib/x86_64-linux-gnu';

/**
 * Copies `programs` from `packagesRoot` (the packages `dpkg -x`ed into one
 * tree) into the initramfs at `/bin/<name>`, with their dynamic loader and
 * every shared library they load, found by following DT_NEEDED through the
 * same tree, so nothing of the build host's own libraries gets in. Returns
 * the guest paths it wrote, sorted. A library no package holds is an error
 * naming it and the program that needs it.
 */
export async function stageGuestPrograms(
  staging: string,
  packagesRoot: string,
  programs: readonly GuestProgram[],
): Promise<string[]> {
  const written = new Set<string>();
  const libraries = new Map<string, string>();
  const addLibrary = async (soname: string, neededBy: string): Promise<void> => {
    if (libraries.has(soname)) return;
    const found = await findLibrary(packagesRoot, soname);
    if (!found) {
      throw new HavenError(
        'not_found',
        `shared library ${soname} (needed by ${neededBy}) is in none of the packages`,
        {
          library: soname,
          neededBy,
        },
      );
    }
    libraries.set(soname, found);
    for (const next of readElfDynamic(await readFile(found)).needed) await addLibrary(next, soname);
  };
  await mkdir(join(staging, GUEST_LIBRARY_DIR), { recursive: true });
  for (const program of programs) {
    const source = await resolveInRoot(packagesRoot, program.path);
    const elf = await readFile(source);
    const dynamic = readElfDynamic(elf);
    const target = `bin/${posix.basename(program.path)}`;
    await copyFile(source, join(staging, target));
    await chmod(join(staging, target), 0o755);
    written.add(target);
    if (dynamic.interpreter) {
      const loader = await resolveInRoot(packagesRoot, dynamic.interpreter);
      const soname = posix.basename(dynamic.interpreter);
      libraries.set(soname, loader);
      const link = dynamic.interpreter.replace(/^\//, '');
      if (!written.has(link) && link !== `${GUEST_LIBRARY_DIR}/${soname}`) {
        await mkdir(dirname(join(staging, link)), { recursive: true });
        await symlink(`/${GUEST_LIBRARY_DIR}/${soname}`, join(staging, link));
        written.add(link);
      }
    }
    for (const soname of dynamic.needed) await addLibrary(soname, program.path);
  }
  for (const [soname, source] of libraries) {
    const target = `${GUEST_LIBRARY_DIR}/${soname}`;
    await copyFile(source, join(staging, target));
    await chmod(join(staging, target), 0o755);
    written.add(target);
  }
  return [...written].sort();
}

async function findLibrary(root: string, soname: string): Promise<string | undefined> {
  for (const dir of LIBRARY_DIRS) {
    try {
      return await resolveInRoot(root, `${dir}/${soname}`);
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/**
 * The file `path` names inside `root`, following symlinks the way the guest
 * would see them: an absolute target is inside `root` too (libc6 links
 * /lib64/ld-linux-x86-64.so.2 to /lib/x86_64-linux-gnu/...), never the
 * build host's own file.
 */
async function resolveInRoot(root: string, path: string): Promise<string> {
  let current = path.replace(/^\/+/, '');
  for (let hops = 0; hops < 40; hops++) {
    const parts = current.split('/');
    let resolved = '';
    let followed = false;
    for (let i = 0; i < parts.length; i++) {
      const next = resolved ? `${resolved}/${parts[i]}` : parts[i]!;
      const info = await lstat(join(root, next));
      if (info.isSymbolicLink()) {
        const target = await readlink(join(root, next));
        const base = target.startsWith('/') ? target : posix.join(posix.dirname(next), target);
        current = posix.normalize([base, ...parts.slice(i + 1)].join('/')).replace(/^\/+/, '');
        if (current.startsWith('..')) {
          throw new HavenError('bad_request', `symlink ${next} points outside the package tree`, { path });
        }
        followed = true;
        break;
      }
      resolved = next;
    }
    if (!followed) return join(root, resolved);
  }
  throw new HavenError('bad_request', `too many symlinks resolving ${path} in the package tree`, { path });
}
