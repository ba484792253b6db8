import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { access, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_PORTAL_DIR } from '../api/serve-portal.ts';

/** What the portal's build is made of: the build's stamp records their digest. */
const PORTAL_SOURCE = dirname(DEFAULT_PORTAL_DIR);
const REPO_ROOT = dirname(PORTAL_SOURCE);
const SOURCES = ['index.html', 'vite.config.ts', 'src'];
const STAMP = '.source-sha256';
const VITE = join(REPO_ROOT, 'node_modules/vite/bin/vite.js');

export type PortalBuild =
  | { state: 'current' | 'built'; dir: string }
  /** No build and none possible (e.g. installed without dev dependencies): the vault answers 503 at `/`. */
  | { state: 'unavailable'; dir: string; reason: string };

/** Where a start banner says the portal is: the vault's URL, or why there is none. */
export function portalBanner(build: PortalBuild, url: string): string {
  return build.state === 'unavailable' ? `not built: ${build.reason}` : `${url}/`;
}

/**
 * Builds the portal into portal/dist when it is missing or older than its
 * sources (a fresh clone, a pull, an edit), so `haven up` and `haven vault` serve the portal
 * that matches the checkout. Concurrent starts each build into their own
 * folder and swap it in; a start whose swap loses keeps the winner's build.
 */
export async function ensurePortalBuilt(log: (line: string) => void = () => {}): Promise<PortalBuild> {
  const dir = DEFAULT_PORTAL_DIR;
  const digest = await sourceDigest();
  if ((await builtFrom(dir)) === digest) return { state: 'current', dir };
  if (!(await exists(VITE))) {
    const reason = `Vite is not installed (${relative(REPO_ROOT, VITE)}): run npm ci, then start again`;
    log(`portal: not built: ${reason}`);
    return { state: 'unavailable', dir, reason };
  }
  const started = Date.now();
  log(
    `portal: building ${relative(process.cwd(), dir) || dir} (${(await exists(join(dir, 'index.html'))) ? 'its sources changed since the last build' : 'first start'})…`,
  );
  const staging = join(PORTAL_SOURCE, `.dist-${randomUUID()}`);
  try {
    await promisify(execFile)(
      process.execPath,
      [VITE, 'build', PORTAL_SOURCE, '--outDir', staging, '--emptyOutDir', '--logLevel', 'warn'],
      { cwd: REPO_ROOT, timeout: 180_000 },
    );
    await writeFile(join(staging, STAMP), digest);
    await swapIn(staging, dir, digest);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    const reason = `vite build failed: ${(error as Error).message.split('\n').slice(0, 6).join('\n')}`;
    log(`portal: not built: ${reason}`);
    return { state: 'unavailable', dir, reason };
  }
  log(`portal: built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { state: 'built', dir };
}

/** Replaces `dir` with `staging`; when another start swapped in the same sources first, keeps that. */
async function swapIn(staging: string, dir: string, digest: string): Promise<void> {
  // Another start built the same sources meanwhile: keep its build rather than move it under its readers.
  if ((await builtFrom(dir)) === digest) {
    await rm(staging, { recursive: true, force: true });
    return;
  }
  const old = `${staging}-old`;
  await rename(dir, old).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
  try {
    await rename(staging, dir);
  } catch (error) {
    if ((await builtFrom(dir)) !== digest) throw error;
    await rm(staging, { recursive: true, force: true });
  }
  await rm(old, { recursive: true, force: true });
}

/** The digest of the sources the build in `dir` was made from ('' when there is none). */
function builtFrom(dir: string): Promise<string> {
  return readFile(join(dir, STAMP), 'utf8').catch(() => '');
}

async function sourceDigest(): Promise<string> {
  const hash = createHash('sha256');
  const files: string[] = [];
  for (const entry of SOURCES) files.push(...(await filesUnder(join(PORTAL_SOURCE, entry))));
  // Dependencies (React, Vite) are part of what gets built.
  files.push(join(REPO_ROOT, 'package-lock.json'));
  for (const file of files.sort()) {
    hash.update(`${relative(REPO_ROOT, file)}\0`);
    hash.update(await readFile(file).catch(() => Buffer.alloc(0)));
    hash.update('\0');
  }
  return hash.digest('hex');
}

async function filesUnder(path: string): Promise<string[]> {
  const entries = await readdir(path, { withFileTypes: true, recursive: true }).catch(() => null);
  if (entries === null) return [path];
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
