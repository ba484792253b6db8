import { createHash, randomBytes } from 'node:crypto';
import { access, mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { HavenError } from '../errors/index.ts';
import { runTool, runToolOrThrow } from './run-tool.ts';

/** A Debian package at the version apt's lists offer. */
export interface DebianPackage {
  name: string;
  version: string;
}

/**
 * Asks apt (through `query`, which answers undefined when apt does not know
 * the package). On a fresh machine the lists are missing; then it runs
 * `apt-get update` once and asks again. apt-cache takes seconds here (no
 * pkgcache.bin), so the answer is remembered in the cache directory, under
 * `memoName`, until the lists change.
 */
export async function askApt<T>(
  cacheDir: string,
  memoName: string,
  query: () => Promise<T | undefined>,
  log: (message: string) => void,
): Promise<T | undefined> {
  const memoFile = join(cacheDir, `${memoName}.json`);
  const fingerprint = await aptListsFingerprint();
  try {
    const memo = JSON.parse(await readFile(memoFile, 'utf8')) as AptMemo<T>;
    if (memo.fingerprint === fingerprint && memo.answer !== undefined) return memo.answer;
  } catch {
    // No memo yet, or a torn one from a crashed writer: ask apt.
  }
  let answer = await query();
  if (answer === undefined) {
    log(`apt lists do not know ${memoName}; running apt-get update`);
    await aptGetUpdate();
    answer = await query();
  }
  if (answer === undefined) return undefined;
  await mkdir(cacheDir, { recursive: true });
  const memo: AptMemo<T> = { fingerprint: await aptListsFingerprint(), answer };
  const tmp = `${memoFile}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, JSON.stringify(memo));
  await rename(tmp, memoFile);
  return answer;
}

interface AptMemo<T> {
  fingerprint: string;
  answer: T;
}

/**
 * `roots` and the library packages they depend on, recursively (Depends and
 * Pre-Depends, first alternative, names starting with `lib`): what a program
 * copied out of its package needs to run. Maintainer-script tools (debconf,
 * udev, lsb-base) are left out: nothing installs the packages.
 */
export async function libraryClosure(
  cacheDir: string,
  roots: readonly string[],
  log: (message: string) => void,
): Promise<DebianPackage[]> {
  const found = await askApt(
    cacheDir,
    `closure-${[...roots].sort().join('+')}`,
    async () => {
      const packages = new Map<string, DebianPackage>();
      let wanted = [...roots];
      while (wanted.length > 0) {
        const show = await runTool('apt-cache', ['show', '--no-all-versions', ...wanted], {
          debianPackage: 'apt',
        });
        const next = new Set<string>();
        for (const stanza of show.stdout.split(/\n\n+/)) {
          const name = /^Package: (\S+)$/m.exec(stanza)?.[1];
          const version = /^Version: (\S+)$/m.exec(stanza)?.[1];
          if (!name || !version) continue;
          packages.set(name, { name, version });
          for (const dep of packageDepends(stanza)) if (!packages.has(dep)) next.add(dep);
        }
        if (wanted.some((name) => !packages.has(name))) return undefined;
        wanted = [...next];
      }
      return [...packages.values()].sort((a, b) => a.name.localeCompare(b.name));
    },
    log,
  );
  if (!found) {
    throw new HavenError('not_available', `apt does not know the packages ${roots.join(', ')}`, {
      packages: [...roots],
    });
  }
  return found;
}

/** The library packages a package stanza's Depends and Pre-Depends name (first alternatives). */
export function packageDepends(stanza: string): string[] {
  const names: string[] = [];
  for (const field of ['Pre-Depends', 'Depends']) {
    const value = new RegExp(`^${field}: (.*)$`, 'm').exec(stanza)?.[1];
    if (!value) continue;
    for (const clause of value.split(',')) {
      const name = clause
        .trim()
        .split('|')[0]!
        .trim()
        .split(/[\s:(]/)[0]!;
      if (name.startsWith('lib')) names.push(name);
    }
  }
  return names;
}

/** Names, sizes and mtimes of apt's list files: changes whenever `apt-get update` fetched something. */
async function aptListsFingerprint(): Promise<string> {
  const dir = '/var/lib/apt/lists';
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.includes('_Packages') || n.endsWith('Release')).sort();
  } catch {
    return 'no-lists';
  }
  const hash = createHash('sha256');
  for (const name of names) {
    const info = await stat(join(dir, name));
    hash.update(`${name} ${info.size} ${info.mtimeMs}\n`);
  }
  return hash.digest('hex');
}

async function aptGetUpdate(): Promise<void> {
  await runToolOrThrow('apt-get', ['update', '-q'], { debianPackage: 'apt' });
}

/**
 * The package's .deb, kept under `<cacheDir>/debs/` so a changed script
 * rebuilds without the network. Downloaded into the private work directory
 * and renamed into place, so a concurrent builder never reads a partial file.
 */
export async function cachedDeb(
  cacheDir: string,
  pkg: DebianPackage,
  work: string,
  log: (message: string) => void,
): Promise<string> {
  // apt names files with the epoch's colon escaped; the cache needs no such file name.
  const kept = join(cacheDir, 'debs', `${pkg.name}_${pkg.version.replace(':', '%3a')}.deb`);
  try {
    await access(kept);
    return kept;
  } catch {
    // Not downloaded yet.
  }
  log(`downloading ${pkg.name}=${pkg.version}`);
  const dir = join(work, `download-${pkg.name}`);
  await mkdir(dir, { recursive: true });
  const downloaded = await downloadPackage(pkg, dir, log);
  await mkdir(dirname(kept), { recursive: true });
  await rename(downloaded, kept);
  return kept;
}

/** `apt-get download` into `dir`; a failure (stale lists, 404) gets one `apt-get update` and a retry. */
async function downloadPackage(
  pkg: DebianPackage,
  dir: string,
  log: (message: string) => void,
): Promise<string> {
  const { name, version } = pkg;
  const download = () => runTool('apt-get', ['download', '-q', `${name}=${version}`], { cwd: dir });
  let result = await download();
  if (result.code !== 0) {
    log(`apt-get download failed (${result.stderr.trim()}); running apt-get update`);
    await aptGetUpdate();
    result = await download();
  }
  if (result.code !== 0) {
    throw new HavenError('unreachable', `cannot download ${name}=${version}: ${result.stderr.trim()}`, {
      package: name,
      version,
    });
  }
  const deb = (await readdir(dir)).find((f) => f.startsWith(`${name}_`) && f.endsWith('.deb'));
  if (!deb) throw new HavenError('internal', `apt-get download left no ${name} .deb in ${dir}`);
  return join(dir, deb);
}
