import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import {
  access,
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { HavenError } from '../errors/index.ts';
import { askApt, cachedDeb, type DebianPackage, libraryClosure } from './debian-packages.ts';
import { isStaticElf } from './elf-dynamic.ts';
import { type GuestProgram, stageGuestPrograms } from './guest-programs.ts';
import {
  GUEST_MODULES,
  moduleLoadOrder,
  moduleName,
  readModuleDepends,
  SERVER_GUEST_MODULES,
} from './kernel-modules.ts';
import { runTool, runToolOrThrow } from './run-tool.ts';

/**
 * `vm`: the workload guest. `server`: the same guest playing a physical Linux
 * server, its disk mirrored by md raid1 onto an NBD export by the server
 * agent (src/server-agent), with Debian's nbd-client, mdadm and openssl and
 * the kernel's nbd and raid1 modules.
 */
export type GuestVariant = 'vm' | 'server';

/** A built kernel + initramfs: boot it with `-kernel kernel -initrd initramfs`. */
export interface InitramfsImage {
  kernel: string;
  initramfs: string;
  /** Debian package the kernel came from, e.g. linux-image-6.1.0-50-cloud-amd64. */
  kernelPackage: string;
  kernelPackageVersion: string;
  /** `uname -r` of the kernel. */
  kernelRelease: string;
  /** Kernel modules in the initramfs, in the order init loads them. */
  modules: string[];
  /** Debian packages the initramfs carries programs and libraries of, as name=version. */
  packages: string[];
  /** Hash of every input; the cache directory's name. */
  cacheKey: string;
  /** False when this call built the image, true when it was already cached. */
  cached: boolean;
}

/** A built guest: boot it with `-kernel kernel -initrd initramfs`. */
export interface GuestImage extends InitramfsImage {
  variant: GuestVariant;
}

/**
 * What an initramfs image is made of. The test guest and the server's
 * recovery environment (src/server-agent) are both one: busybox, the
 * kernel's modules, their scripts and programs out of Debian packages.
 */
export interface InitramfsRecipe {
  /** Names the cache entry: a hash of every input (hashParts). */
  cacheKey: string;
  kernel: DebianPackage;
  /** Module roots; their dependencies come along. */
  modules: readonly string[];
  busybox: Buffer;
  /** Executable files by path in the initramfs, `init` among them. */
  scripts: Readonly<Record<string, Uint8Array>>;
  /** Symbolic links by path in the initramfs, to their targets. */
  links?: Readonly<Record<string, string>>;
  /** Programs copied out of Debian packages with the libraries they load. */
  programs?: { list: readonly GuestProgram[]; packages: readonly DebianPackage[] };
}

export interface BuildGuestImageOptions {
  /** Defaults to defaultGuestCacheDir(). */
  cacheDir?: string;
  /** Kernel package to use; defaults to what `linux-image-cloud-amd64` depends on. */
  kernelPackage?: string;
  /** Default `vm`. */
  variant?: GuestVariant;
  /** Progress messages (download, extract...). */
  log?: (message: string) => void;
}

/** The server variant's programs (and, through libraryClosure, their libraries' packages). */
export const SERVER_PROGRAMS: readonly GuestProgram[] = [
  { package: 'nbd-client', path: 'sbin/nbd-client' },
  { package: 'mdadm', path: 'sbin/mdadm' },
  // The server agent's HTTPS client (s_client) and its key and request maker (req).
  { package: 'openssl', path: 'usr/bin/openssl' },
];

/** Bump when the image layout changes in a way the hashed inputs do not show. */
const LAYOUT_VERSION = 1;
const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
const BUSYBOX = '/bin/busybox';
const INIT_SCRIPT = new URL('./guest-init.sh', import.meta.url);
const POWERDOWN_SCRIPT = new URL('./guest-powerdown.sh', import.meta.url);
const AGENT_SCRIPT = new URL('./guest-agent.sh', import.meta.url);
/**
 * The server agent the server variant carries. Named by path, not imported:
 * src/server-agent builds its recovery environment on this folder's image
 * build, so this folder must not import it.
 */
const SERVER_AGENT_SCRIPT = new URL('../server-agent/haven-server-agent.sh', import.meta.url);

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
  const variant = options.variant ?? 'vm';
  const kernel = await resolveKernelPackage(cacheDir, options.kernelPackage, log);
  const moduleRoots = variant === 'server' ? [...GUEST_MODULES, ...SERVER_GUEST_MODULES] : GUEST_MODULES;
  const server =
    variant === 'server'
      ? {
          script: await readFile(SERVER_AGENT_SCRIPT),
          packages: await libraryClosure(
            cacheDir,
            SERVER_PROGRAMS.map((p) => p.package),
            log,
          ),
        }
      : undefined;
  const cacheKey = guestImageKey({
    kernel,
    modules: moduleRoots,
    initScript,
    powerdownScript,
    agentScript,
    busybox,
    ...(server ? { server } : {}),
  });
  const image = await buildInitramfsImage(
    cacheDir,
    {
      cacheKey,
      kernel,
      modules: moduleRoots,
      busybox,
      scripts: {
        init: initScript,
        'bin/haven-powerdown': powerdownScript,
        'bin/haven-agent': agentScript,
        ...(server ? { 'bin/haven-server-agent': server.script } : {}),
      },
      // busybox acpid runs <confdir>/PWRF/00000080 when the power button is pressed.
      links: { 'etc/acpi/PWRF/00000080': '/bin/haven-powerdown' },
      ...(server ? { programs: { list: SERVER_PROGRAMS, packages: server.packages } } : {}),
    },
    log,
  );
  return { ...image, variant };
}

/**
 * Builds the image `recipe` describes, or returns the cached one (the entry
 * `<cacheDir>/<recipe.cacheKey>`). Concurrent builders each work in a
 * private temporary directory and rename the finished entry into place; the
 * loser of the race discards its copy, so readers never see a partial image.
 */
export async function buildInitramfsImage(
  cacheDir: string,
  recipe: InitramfsRecipe,
  log: (message: string) => void,
): Promise<InitramfsImage> {
  const { cacheKey, kernel } = recipe;
  const entry = join(cacheDir, cacheKey);
  const existing = await readManifest(entry);
  if (existing) return { ...existing, ...paths(entry), cacheKey, cached: true };

  await mkdir(cacheDir, { recursive: true });
  await removeAbandonedBuilds(cacheDir);
  const work = join(cacheDir, `.build-${cacheKey}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(work);
  try {
    const deb = await cachedDeb(cacheDir, kernel, work, log);
    const root = join(work, 'root');
    await runToolOrThrow('dpkg', ['-x', deb, root], { debianPackage: 'dpkg' });
    const kernelRelease = await findKernelRelease(root, kernel.name);

    const out = join(work, 'out');
    await mkdir(out);
    await copyFile(join(root, 'boot', `vmlinuz-${kernelRelease}`), join(out, 'vmlinuz'));
    const staging = join(work, 'initramfs');
    const modules = await stageInitramfs(staging, {
      modulesDir: join(root, 'lib', 'modules', kernelRelease),
      modules: recipe.modules,
      scripts: recipe.scripts,
      links: recipe.links ?? {},
      busybox: recipe.busybox,
    });
    const packages = recipe.programs?.packages ?? [];
    if (recipe.programs) {
      const packagesRoot = join(work, 'packages');
      for (const pkg of packages) {
        await runToolOrThrow('dpkg', ['-x', await cachedDeb(cacheDir, pkg, work, log), packagesRoot], {
          debianPackage: 'dpkg',
        });
      }
      const files = await stageGuestPrograms(staging, packagesRoot, recipe.programs.list);
      log(`staged ${files.length} program and library files from ${packages.length} packages`);
    }
    log(`packing initramfs (${modules.length} modules)`);
    await packInitramfs(staging, join(out, 'initramfs.gz'));
    const manifest: Manifest = {
      kernelPackage: kernel.name,
      kernelPackageVersion: kernel.version,
      kernelRelease,
      modules,
      packages: packages.map((p) => `${p.name}=${p.version}`),
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
  if (!built) throw new HavenError('internal', `image cache entry ${entry} has no manifest after build`);
  log(`built image ${entry}`);
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
  /** The server variant's agent script and the packages its programs come from. */
  server?: { script: Uint8Array; packages: readonly DebianPackage[] };
}): string {
  return hashParts([
    `layout ${LAYOUT_VERSION}`,
    `kernel ${inputs.kernel.name}=${inputs.kernel.version}`,
    `modules ${inputs.modules.join(',')}`,
    `init ${sha256(inputs.initScript)}`,
    `powerdown ${sha256(inputs.powerdownScript)}`,
    `agent ${sha256(inputs.agentScript)}`,
    `busybox ${sha256(inputs.busybox)}`,
    // Only the server variant adds parts, so a workload guest's key is what it always was.
    ...(inputs.server
      ? [
          `server ${sha256(inputs.server.script)}`,
          `packages ${inputs.server.packages.map((p) => `${p.name}=${p.version}`).join(',')}`,
        ]
      : []),
  ]);
}

/** A cache key: the first 16 hex digits of the SHA-256 of `parts`, each ended by a NUL. */
export function hashParts(parts: readonly string[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part).update('\0');
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
  packages: string[];
}

function paths(entry: string): { kernel: string; initramfs: string } {
  return { kernel: join(entry, 'vmlinuz'), initramfs: join(entry, 'initramfs.gz') };
}

async function readManifest(entry: string): Promise<Manifest | undefined> {
  try {
    const manifest = JSON.parse(await readFile(join(entry, 'manifest.json'), 'utf8')) as Manifest;
    await access(join(entry, 'initramfs.gz'));
    // Entries built before packages were recorded carry none.
    return { ...manifest, packages: manifest.packages ?? [] };
  } catch {
    return undefined;
  }
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The build host's static busybox: the initramfs's shell and tools. */
export async function readBusybox(): Promise<Buffer> {
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

/** The kernel package (default: what linux-image-cloud-amd64 depends on) and its candidate version, from apt's lists. */
export async function resolveKernelPackage(
  cacheDir: string,
  pinned: string | undefined,
  log: (message: string) => void,
): Promise<DebianPackage> {
  const wanted = pinned ?? KERNEL_META_PACKAGE;
  const kernel = await askApt(
    cacheDir,
    `resolved-${wanted}`,
    async () => {
      const show = await runTool('apt-cache', ['show', '--no-all-versions', wanted], {
        debianPackage: 'apt',
      });
      if (pinned) {
        const version = /^Version: (\S+)$/m.exec(show.stdout)?.[1];
        return version ? { name: pinned, version } : undefined;
      }
      // The meta package pins the real one exactly: "Depends: linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)".
      const match = /^Depends: (linux-image-\S+) \(= (\S+)\)/m.exec(show.stdout);
      return match ? { name: match[1]!, version: match[2]! } : undefined;
    },
    log,
  );
  if (!kernel) {
    throw new HavenError('not_available', `no Debian package for the guest kernel (${wanted})`, {
      package: wanted,
    });
  }
  return kernel;
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
 * Lays out the initramfs tree: busybox and its applet links, the recipe's
 * scripts and links, and the modules with their load order
 * (`lib/modules/load-order`). Returns the modules in load order.
 */
async function stageInitramfs(
  dir: string,
  input: {
    modulesDir: string;
    modules: readonly string[];
    scripts: Readonly<Record<string, Uint8Array>>;
    links: Readonly<Record<string, string>>;
    busybox: Buffer;
  },
): Promise<string[]> {
  for (const sub of ['bin', 'dev', 'proc', 'sys', 'run', 'lib/modules']) {
    await mkdir(join(dir, sub), { recursive: true });
  }
  await writeFile(join(dir, 'bin', 'busybox'), input.busybox, { mode: 0o755 });
  const applets = (await runToolOrThrow(BUSYBOX, ['--list'])).stdout.split('\n').filter(Boolean);
  for (const applet of applets) {
    if (applet !== 'busybox') await symlink('busybox', join(dir, 'bin', applet));
  }
  for (const [path, content] of Object.entries(input.scripts)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
    // writeFile's mode is filtered by the umask; the scripts must be executable.
    await chmod(join(dir, path), 0o755);
  }
  for (const [path, target] of Object.entries(input.links)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await symlink(target, join(dir, path));
  }

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
  for (const name of input.modules) await collectDepends(moduleName(name), pathOf, depends);
  const loadOrder = moduleLoadOrder(input.modules, (name) => depends.get(name) ?? []);
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

/**
 * Writes `output`: the image's initramfs followed by a second archive holding
 * `files` (filesArchive), for what one boot needs and the shared cached image
 * must not carry, such as a TLS key. The kernel unpacks concatenated archives
 * in order, the later ones adding files.
 */
export async function initramfsWithFiles(
  image: Pick<GuestImage, 'initramfs'>,
  files: Readonly<Record<string, string | Uint8Array>>,
  output: string,
): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'haven-initramfs-'));
  try {
    await filesArchive(files, join(work, 'extra.gz'));
    await writeFile(
      output,
      Buffer.concat([await readFile(image.initramfs), await readFile(join(work, 'extra.gz'))]),
      { mode: 0o600 },
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Writes `output`: a gzipped initramfs archive of `files` alone (guest path →
 * content, mode 0600), to load after the image's own (a second initrd).
 */
export async function filesArchive(
  files: Readonly<Record<string, string | Uint8Array>>,
  output: string,
): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'haven-initramfs-'));
  try {
    for (const [path, content] of Object.entries(files)) {
      const relative = path.replace(/^\/+/, '');
      if (relative === '' || relative.split('/').includes('..')) {
        throw new HavenError('validation_failed', `initramfs path '${path}' must name a file inside it`, {
          field: 'files',
        });
      }
      await mkdir(dirname(join(work, relative)), { recursive: true });
      await writeFile(join(work, relative), content, { mode: 0o600 });
    }
    await packInitramfs(work, output);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
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
