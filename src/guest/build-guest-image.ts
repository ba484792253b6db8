import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import {
  access,
  chmod,
  copyFile,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { HavenError } from '../errors/index.ts';
import { GUEST_MODULES, moduleLoadOrder, moduleName, readModuleDepends } from './kernel-modules.ts';
import { runTool, runToolOrThrow } from './run-tool.ts';

/** A built guest: boot it with `-kernel kernel -initrd initramfs`. */
export interface GuestImage {
  kernel: string;
  initramfs: string;
  /** Debian package the kernel came from, e.g. linux-image-6.1.0-50-cloud-amd64. */
  kernelPackage: string;
  kernelPackageVersion: string;
  /** `uname -r` of the guest kernel. */
  kernelRelease: string;
  /** Kernel modules in the initramfs, in the order init loads them. */
  modules: string[];
  /** Hash of every input; the cache directory's name. */
  cacheKey: string;
  /** False when this call built the image, true when it was already cached. */
  cached: boolean;
}

export interface BuildGuestImageOptions {
  /** Defaults to defaultGuestCacheDir(). */
  cacheDir?: string;
  /** Kernel package to use; defaults to what `linux-image-cloud-amd64` depends on. */
  kernelPackage?: string;
  /** Progress messages (download, extract...). */
  log?: (message: string) => void;
}

/** Bump when the image layout changes in a way the hashed inputs do not show. */
const LAYOUT_VERSION = 1;
const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
const BUSYBOX = '/bin/busybox';
const INIT_SCRIPT = new URL('./guest-init.sh', import.meta.url);
const POWERDOWN_SCRIPT = new URL('./guest-powerdown.sh', import.meta.url);
const AGENT_SCRIPT = new URL('./guest-agent.sh', import.meta.url);

/** `$HAVEN_CACHE_DIR/guest`, or `~/.cache/haven/guest`. */
export function defaultGuestCacheDir(): string {
  const root = process.env.HAVEN_CACHE_DIR ?? join(homedir(), '.cache', 'haven');
  return join(root, 'guest');
}

/**
 * Builds the test guest (Debian cloud kernel + busybox initramfs running
 * guest-init.sh), or returns the cached one. The cache entry is named by a
 * hash of the kernel package version, the scripts, busybox and the module
 * list, so changing any of them rebuilds. Concurrent builders each work in a
 * private temporary directory and rename the finished entry into place; the
 * loser of the race discards its copy, so readers never see a partial image.
 */
export async function buildGuestImage(options: BuildGuestImageOptions = {}): Promise<GuestImage> {
  const cacheDir = options.cacheDir ?? defaultGuestCacheDir();
  const log = options.log ?? (() => {});
  const [initScript, powerdownScript, agentScript, busybox] = await Promise.all([
    readFile(INIT_SCRIPT),
    readFile(POWERDOWN_SCRIPT),
    readFile(AGENT_SCRIPT),
    readBusybox(),
  ]);
  const kernel = await resolveKernelPackage(cacheDir, options.kernelPackage, log);
  const cacheKey = guestImageKey({
    kernel,
    modules: GUEST_MODULES,
    initScript,
    powerdownScript,
    agentScript,
    busybox,
  });
  const entry = join(cacheDir, cacheKey);

  const existing = await readManifest(entry);
  if (existing) return { ...existing, ...paths(entry), cacheKey, cached: true };

  await mkdir(cacheDir, { recursive: true });
  await removeAbandonedBuilds(cacheDir);
  const work = join(cacheDir, `.build-${cacheKey}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(work);
  try {
    const deb = await kernelDeb(cacheDir, kernel, work, log);
    const root = join(work, 'root');
    await runToolOrThrow('dpkg', ['-x', deb, root], { debianPackage: 'dpkg' });
    const kernelRelease = await findKernelRelease(root, kernel.name);

    const out = join(work, 'out');
    await mkdir(out);
    await copyFile(join(root, 'boot', `vmlinuz-${kernelRelease}`), join(out, 'vmlinuz'));
    const staging = join(work, 'initramfs');
    const modules = await stageInitramfs(staging, {
      modulesDir: join(root, 'lib', 'modules', kernelRelease),
      initScript,
      powerdownScript,
      agentScript,
      busybox,
    });
    log(`packing initramfs (${modules.length} modules)`);
    await packInitramfs(staging, join(out, 'initramfs.gz'));
    const manifest: Manifest = {
      kernelPackage: kernel.name,
      kernelPackageVersion: kernel.version,
      kernelRelease,
      modules,
    };
    await writeFile(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    try {
      await rename(out, entry);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Another process finished the same build first; its entry is identical.
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const built = await readManifest(entry);
  if (!built)
    throw new HavenError('internal', `guest image cache entry ${entry} has no manifest after build`);
  log(`built guest image ${entry}`);
  return { ...built, ...paths(entry), cacheKey, cached: false };
}

/** Everything an image is made from, hashed: a change to any input names a new cache entry. */
export function guestImageKey(inputs: {
  kernel: { name: string; version: string };
  modules: readonly string[];
  initScript: Uint8Array;
  powerdownScript: Uint8Array;
  agentScript: Uint8Array;
  busybox: Uint8Array;
}): string {
  const hash = createHash('sha256');
  for (const part of [
    `layout ${LAYOUT_VERSION}`,
    `kernel ${inputs.kernel.name}=${inputs.kernel.version}`,
    `modules ${inputs.modules.join(',')}`,
    `init ${sha256(inputs.initScript)}`,
    `powerdown ${sha256(inputs.powerdownScript)}`,
    `agent ${sha256(inputs.agentScript)}`,
    `busybox ${sha256(inputs.busybox)}`,
  ]) {
    hash.update(part).update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

/** Work directories of builders that died mid-build (named `.build-<key>-<pid>-<random>`). */
async function removeAbandonedBuilds(cacheDir: string): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    const pid = Number(/^\.build-[0-9a-f]+-(\d+)-/.exec(name)?.[1]);
    if (!pid || processIsAlive(pid)) continue;
    await rm(join(cacheDir, name), { recursive: true, force: true });
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface Manifest {
  kernelPackage: string;
  kernelPackageVersion: string;
  kernelRelease: string;
  modules: string[];
}

function paths(entry: string): { kernel: string; initramfs: string } {
  return { kernel: join(entry, 'vmlinuz'), initramfs: join(entry, 'initramfs.gz') };
}

async function readManifest(entry: string): Promise<Manifest | undefined> {
  try {
    const manifest = JSON.parse(await readFile(join(entry, 'manifest.json'), 'utf8')) as Manifest;
    await access(join(entry, 'initramfs.gz'));
    return manifest;
  } catch {
    return undefined;
  }
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readBusybox(): Promise<Buffer> {
  let busybox: Buffer;
  try {
    busybox = await readFile(BUSYBOX);
  } catch {
    throw new HavenError('not_available', `${BUSYBOX} is missing; the guest needs a static busybox`, {
      install: 'busybox-static',
    });
  }
  if (!isStaticElf(busybox)) {
    throw new HavenError('not_available', `${BUSYBOX} is dynamically linked; the guest has no libc`, {
      install: 'busybox-static',
    });
  }
  return busybox;
}

/** A 64-bit ELF with no PT_INTERP program header runs without a dynamic loader. */
export function isStaticElf(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > elf.length) return false;
    if (elf.readUInt32LE(at) === 3) return false; // PT_INTERP
  }
  return true;
}

/**
 * Finds the kernel package and its candidate version from apt's lists. On a
 * fresh machine the lists are missing; then it runs `apt-get update` once
 * and asks again. apt-cache takes seconds here (no pkgcache.bin), so the
 * answer is remembered in the cache directory until the lists change.
 */
async function resolveKernelPackage(
  cacheDir: string,
  pinned: string | undefined,
  log: (message: string) => void,
): Promise<{ name: string; version: string }> {
  const wanted = pinned ?? KERNEL_META_PACKAGE;
  const memoFile = join(cacheDir, `resolved-${wanted}.json`);
  const fingerprint = await aptListsFingerprint();
  try {
    const memo = JSON.parse(await readFile(memoFile, 'utf8')) as Partial<KernelMemo>;
    const kernel = memo.kernel;
    if (
      memo.fingerprint === fingerprint &&
      typeof kernel?.name === 'string' &&
      typeof kernel.version === 'string'
    )
      return kernel;
  } catch {
    // No memo yet, or a torn one from a crashed writer: ask apt. A memo of another shape (written by
    // another version sharing the cache) is asked again too, and replaced.
  }
  const attempt = async (): Promise<{ name: string; version: string } | undefined> => {
    const show = await runTool('apt-cache', ['show', '--no-all-versions', wanted], { debianPackage: 'apt' });
    if (pinned) {
      const version = /^Version: (\S+)$/m.exec(show.stdout)?.[1];
      return version ? { name: pinned, version } : undefined;
    }
    // The meta package pins the real one exactly: "Depends: linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)".
    const match = /^Depends: (linux-image-\S+) \(= (\S+)\)/m.exec(show.stdout);
    return match ? { name: match[1]!, version: match[2]! } : undefined;
  };
  let kernel = await attempt();
  if (!kernel) {
    log('apt lists do not know the kernel package; running apt-get update');
    await aptGetUpdate();
    kernel = await attempt();
  }
  if (!kernel) {
    throw new HavenError('not_available', `no Debian package for the guest kernel (${wanted})`, {
      package: wanted,
    });
  }
  await mkdir(cacheDir, { recursive: true });
  const memo: KernelMemo = { fingerprint: await aptListsFingerprint(), kernel };
  const tmp = `${memoFile}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, JSON.stringify(memo));
  await rename(tmp, memoFile);
  return kernel;
}

interface KernelMemo {
  fingerprint: string;
  kernel: { name: string; version: string };
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
 * The kernel .deb, kept under `debs/` so a changed init script rebuilds
 * without the network. Downloaded into the private work directory and renamed
 * into place, so a concurrent builder never reads a partial file.
 */
async function kernelDeb(
  cacheDir: string,
  kernel: { name: string; version: string },
  work: string,
  log: (message: string) => void,
): Promise<string> {
  const kept = join(cacheDir, 'debs', `${kernel.name}_${kernel.version}.deb`);
  try {
    await access(kept);
    return kept;
  } catch {
    // Not downloaded yet.
  }
  log(`downloading ${kernel.name}=${kernel.version}`);
  const downloaded = await downloadPackage(kernel.name, kernel.version, work, log);
  await mkdir(dirname(kept), { recursive: true });
  await rename(downloaded, kept);
  return kept;
}

/** `apt-get download` into `dir`; a failure (stale lists, 404) gets one `apt-get update` and a retry. */
async function downloadPackage(
  name: string,
  version: string,
  dir: string,
  log: (message: string) => void,
): Promise<string> {
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

async function findKernelRelease(root: string, packageName: string): Promise<string> {
  const kernels = (await readdir(join(root, 'boot'))).filter((f) => f.startsWith('vmlinuz-'));
  if (kernels.length !== 1) {
    throw new HavenError('internal', `${packageName} holds ${kernels.length} kernels, expected one`, {
      kernels,
    });
  }
  return kernels[0]!.slice('vmlinuz-'.length);
}

/**
 * Lays out the initramfs tree: busybox and its applet links, the init,
 * powerdown and guest agent scripts, the acpid hook, and the modules with their load order.
 * Returns the modules in load order.
 */
async function stageInitramfs(
  dir: string,
  input: {
    modulesDir: string;
    initScript: Buffer;
    powerdownScript: Buffer;
    agentScript: Buffer;
    busybox: Buffer;
  },
): Promise<string[]> {
  for (const sub of ['bin', 'dev', 'proc', 'sys', 'run', 'data', 'lib/modules', 'etc/acpi/PWRF']) {
    await mkdir(join(dir, sub), { recursive: true });
  }
  await writeFile(join(dir, 'bin', 'busybox'), input.busybox, { mode: 0o755 });
  const applets = (await runToolOrThrow(BUSYBOX, ['--list'])).stdout.split('\n').filter(Boolean);
  for (const applet of applets) {
    if (applet !== 'busybox') await symlink('busybox', join(dir, 'bin', applet));
  }
  await writeFile(join(dir, 'init'), input.initScript, { mode: 0o755 });
  await writeFile(join(dir, 'bin', 'haven-powerdown'), input.powerdownScript, { mode: 0o755 });
  await writeFile(join(dir, 'bin', 'haven-agent'), input.agentScript, { mode: 0o755 });
  // writeFile's mode is filtered by the umask; the scripts must be executable.
  for (const script of ['init', 'bin/haven-powerdown', 'bin/haven-agent'])
    await chmod(join(dir, script), 0o755);
  // busybox acpid runs <confdir>/PWRF/00000080 when the power button is pressed.
  await symlink('/bin/haven-powerdown', join(dir, 'etc', 'acpi', 'PWRF', '00000080'));

  const order = await readFile(join(input.modulesDir, 'modules.order'), 'utf8');
  const fileOf = new Map<string, string>();
  for (const line of order.split('\n')) if (line) fileOf.set(moduleName(line), line);
  const pathOf = (name: string): string => {
    const file = fileOf.get(name);
    if (!file) throw new HavenError('not_found', `kernel module '${name}' is not in modules.order`, { name });
    return join(input.modulesDir, file);
  };
  const depends = new Map<string, string[]>();
  // moduleLoadOrder is synchronous and pure, so read the dependency tree first.
  for (const name of GUEST_MODULES) await collectDepends(name, pathOf, depends);
  const loadOrder = moduleLoadOrder(GUEST_MODULES, (name) => depends.get(name) ?? []);
  for (const name of loadOrder) await copyFile(pathOf(name), join(dir, 'lib', 'modules', `${name}.ko`));
  await writeFile(
    join(dir, 'lib', 'modules', 'load-order'),
    `${loadOrder.map((n) => `${n}.ko`).join('\n')}\n`,
  );
  return loadOrder;
}

async function collectDepends(
  name: string,
  pathOf: (name: string) => string,
  into: Map<string, string[]>,
): Promise<void> {
  if (into.has(name)) return;
  const deps = readModuleDepends(await readFile(pathOf(name)));
  into.set(name, deps);
  for (const dep of deps) await collectDepends(dep, pathOf, into);
}

/** `cpio -o -H newc` over the staged tree (owned by root), gzipped. */
async function packInitramfs(dir: string, output: string): Promise<void> {
  const files: string[] = [];
  const walk = async (sub: string): Promise<void> => {
    for (const entry of (await readdir(join(dir, sub), { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const path = sub ? `${sub}/${entry.name}` : entry.name;
      files.push(path);
      if (entry.isDirectory()) await walk(path);
    }
  };
  await walk('');
  const cpio = spawn('cpio', ['-o', '-H', 'newc', '--quiet', '-R', '0:0'], {
    cwd: dir,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  cpio.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number>((resolve, reject) => {
    cpio.on('error', (error) =>
      reject(
        (error as NodeJS.ErrnoException).code === 'ENOENT'
          ? new HavenError('not_available', "'cpio' is not installed on this host", { install: 'cpio' })
          : error,
      ),
    );
    cpio.on('close', (code) => resolve(code ?? 1));
  });
  cpio.stdin.end(`${files.join('\n')}\n`);
  await Promise.all([pipeline(cpio.stdout, createGzip({ level: 6 }), createWriteStream(output)), exited]);
  const code = await exited;
  if (code !== 0) throw new HavenError('internal', `cpio exited with ${code}: ${stderr.trim()}`);
}
