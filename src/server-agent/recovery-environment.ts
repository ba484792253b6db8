import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Region } from '../disk/index.ts';
import { isServerDevicePath } from '../domain/index.ts';
import { HavenError } from '../errors/index.ts';
import {
  buildInitramfsImage,
  defaultGuestCacheDir,
  hashParts,
  type InitramfsImage,
  initramfsWithFiles,
  readBusybox,
  resolveKernelPackage,
  SERVER_PROGRAMS,
  sha256,
} from '../guest/build-guest-image.ts';
import { libraryClosure } from '../guest/debian-packages.ts';
import { GUEST_MODULES, SERVER_GUEST_MODULES } from '../guest/kernel-modules.ts';
import { mergeRegions, regionBytes } from '../replica/regions.ts';

/** The failback exports at the primary site: NBD with STARTTLS and a client certificate. */
export interface FailbackExport {
  address: string;
  port: number;
  /** The name the exports' server certificate is checked for. */
  tlsHostname: string;
  caPem: string;
  /**
   * The client certificate the exports require, and its key, embedded in the
   * environment. Omitted: the server's own, read from its disk (`identity`).
   */
  client?: { certPem: string; keyPem: string };
}

/**
 * The server's own identity, on its disk: the agent's state dir (server.conf
 * naming the machine, tls/{ca,cert,key}.pem) on a partition of one of its
 * disks. The environment uses its certificate and key, so no key leaves the
 * server, and reports to the host's agent endpoint with them.
 */
export interface ServerIdentity {
  machineId: string;
  /** The agent's state dir as the server mounts it, e.g. /etc/haven. */
  stateDir: string;
}

/** One disk of the server: its md member, the array to assemble from it, its export and what diverged. */
export interface FailbackDisk {
  /** The server's disk, its md member, e.g. `/dev/vda`. */
  device: string;
  /** The md array assembled from it, e.g. `/dev/md0`. */
  array: string;
  /** The NBD export holding what the disk must become. */
  exportName: string;
  /** What diverged from the server's disk since it stopped (the regions the reverse replication wrote). */
  ranges: readonly ByteRange[];
}

/** Bytes of the server's disk. */
export type ByteRange = Region;

export interface RecoveryEnvironmentOptions {
  export: FailbackExport;
  /** Required unless the export embeds a client certificate. */
  identity?: ServerIdentity;
  disks: readonly FailbackDisk[];
  /** Default DHCP on eth0. */
  network?: 'dhcp' | { address: string; gateway?: string };
  /**
   * Default `reboot`: the recovery environment is a one-time boot (a BMC's
   * boot override for the next boot only, or a network boot Haven serves for
   * this failback alone), so the next boot is the server's own system. Choose
   * `poweroff` for a boot medium that stays in the server, or every reboot
   * would run the failback again.
   */
  then?: 'reboot' | 'poweroff';
  /** Defaults to defaultGuestCacheDir(). */
  cacheDir?: string;
  kernelPackage?: string;
  log?: (message: string) => void;
}

/** A recovery environment written to a directory, with its ways to boot. */
export interface RecoveryEnvironment {
  /** `<dir>/vmlinuz`. */
  kernel: string;
  /** `<dir>/initramfs.gz`: the cached image and this failback's files (mode 0600: it holds the client key). */
  initramfs: string;
  /** The kernel command line every way of booting it passes. */
  cmdline: string;
  /** `<dir>/boot.ipxe`: network boot, its kernel and initramfs named relative to the script (TFTP or HTTP). */
  ipxeScript: string;
  /** `<dir>/syslinux.cfg`: a boot medium holding vmlinuz and initramfs.gz at its root. */
  syslinuxConfig: string;
  /** Per disk, the diverged ranges merged; the bitmap's dirty chunks join them on the server. */
  disks: Array<{ device: string; ranges: ByteRange[]; rangeBytes: number }>;
  rangeBytes: number;
  /** The package-derived part, shared by every failback. */
  image: InitramfsImage;
}

/** Bump when the layout changes in a way the hashed inputs do not show. */
const LAYOUT_VERSION = 1;
const FAILBACK_SCRIPT = new URL('./failback.sh', import.meta.url);
const AGENT_SCRIPT = new URL('./haven-server-agent.sh', import.meta.url);
/**
 * The server guest's drivers (virtio disk and network) and the splitter's
 * (nbd, raid1); a server on other hardware needs its own disk and network
 * drivers added here.
 */
const RECOVERY_MODULES: readonly string[] = [...GUEST_MODULES, ...SERVER_GUEST_MODULES];
/** Serial console last, so it is /dev/console: what a BMC's serial-over-LAN shows. */
const CMDLINE = 'console=tty0 console=ttyS0,115200';

/**
 * Builds the recovery environment for one failback into `dir`: the kernel
 * and the package-derived initramfs (busybox, the nbd and raid1 modules,
 * nbd-client and mdadm; cached, shared by every failback) with this
 * failback's export address, TLS files and ranges appended as a second
 * archive. Its init is failback.sh.
 */
export async function buildRecoveryEnvironment(
  options: RecoveryEnvironmentOptions,
  dir: string,
): Promise<RecoveryEnvironment> {
  const config = failbackConfig(options);
  const disks = options.disks.map((d) => {
    const ranges = mergeRanges(d.ranges);
    return { device: d.device, ranges, rangeBytes: regionBytes(ranges) };
  });
  const image = await recoveryImage(options);
  await mkdir(dir, { recursive: true });
  const kernel = join(dir, 'vmlinuz');
  const initramfs = join(dir, 'initramfs.gz');
  await copyFile(image.kernel, kernel);
  await initramfsWithFiles(
    image,
    {
      '/etc/haven/failback.conf': config,
      ...Object.fromEntries(
        disks.map((d, i) => [rangesFileOf(i), d.ranges.map((r) => `${r.offset} ${r.length}\n`).join('')]),
      ),
      ...(options.export.client
        ? {
            '/etc/haven/failback-tls/ca.pem': options.export.caPem,
            '/etc/haven/failback-tls/cert.pem': options.export.client.certPem,
            '/etc/haven/failback-tls/key.pem': options.export.client.keyPem,
          }
        : {}),
    },
    initramfs,
  );
  const ipxeScript = join(dir, 'boot.ipxe');
  await writeFile(
    ipxeScript,
    ['#!ipxe', `kernel vmlinuz ${CMDLINE}`, 'initrd initramfs.gz', 'boot', ''].join('\n'),
  );
  const syslinuxConfig = join(dir, 'syslinux.cfg');
  await writeFile(
    syslinuxConfig,
    [
      'SERIAL 0 115200',
      'DEFAULT failback',
      'TIMEOUT 0',
      'LABEL failback',
      '  LINUX /vmlinuz',
      '  INITRD /initramfs.gz',
      `  APPEND ${CMDLINE}`,
      '',
    ].join('\n'),
  );
  return {
    kernel,
    initramfs,
    cmdline: CMDLINE,
    ipxeScript,
    syslinuxConfig,
    disks,
    rangeBytes: disks.reduce((sum, d) => sum + d.rangeBytes, 0),
    image,
  };
}

const rangesFileOf = (index: number): string => `/etc/haven/failback.${index}.ranges`;

/** The package-derived part: built once per kernel, busybox, script and package versions. */
async function recoveryImage(options: RecoveryEnvironmentOptions): Promise<InitramfsImage> {
  const cacheDir = options.cacheDir ?? defaultGuestCacheDir();
  const log = options.log ?? (() => {});
  const [script, agent, busybox] = await Promise.all([
    readFile(FAILBACK_SCRIPT),
    readFile(AGENT_SCRIPT),
    readBusybox(),
  ]);
  const kernel = await resolveKernelPackage(cacheDir, options.kernelPackage, log);
  const packages = await libraryClosure(
    cacheDir,
    SERVER_PROGRAMS.map((p) => p.package),
    log,
  );
  const cacheKey = hashParts([
    `recovery-environment ${LAYOUT_VERSION}`,
    `kernel ${kernel.name}=${kernel.version}`,
    `modules ${RECOVERY_MODULES.join(',')}`,
    `init ${sha256(script)}`,
    `agent ${sha256(agent)}`,
    `busybox ${sha256(busybox)}`,
    `packages ${packages.map((p) => `${p.name}=${p.version}`).join(',')}`,
  ]);
  return buildInitramfsImage(
    cacheDir,
    {
      cacheKey,
      kernel,
      modules: RECOVERY_MODULES,
      busybox,
      // The agent's failback-report speaks to the host's agent endpoint with the server's own identity.
      scripts: { init: script, 'bin/haven-server-agent': agent },
      programs: { list: SERVER_PROGRAMS, packages },
    },
    log,
  );
}

/** failback.conf (see failback.sh), after checking every word it will carry. */
export function failbackConfig(options: RecoveryEnvironmentOptions): string {
  const { export: target } = options;
  const word = (
    field: string,
    value: string,
    pattern: RegExp | ((v: string) => boolean),
    allowed: string,
  ): string => {
    if (!(pattern instanceof RegExp ? pattern.test(value) : pattern(value))) {
      throw new HavenError('validation_failed', `${field} '${value}' is not ${allowed}`, { field });
    }
    return value;
  };
  const host = /^[A-Za-z0-9.:-]+$/;
  if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535) {
    throw new HavenError('validation_failed', `export port ${target.port} is not a TCP port (1-65535)`, {
      field: 'export.port',
    });
  }
  if ((options.identity === undefined) === (target.client === undefined)) {
    throw new HavenError(
      'validation_failed',
      'the recovery environment needs either the server’s own identity (on its disk) or an embedded client certificate, not both',
      { field: 'identity' },
    );
  }
  if (options.disks.length === 0 || options.disks.length > 16) {
    throw new HavenError(
      'validation_failed',
      `a failback writes 1 to 16 disks, not ${options.disks.length}`,
      {
        field: 'disks',
      },
    );
  }
  const network = options.network ?? 'dhcp';
  const lines = [
    `export ${word('export.address', target.address, host, 'an address or host name')} ${target.port} ${word('export.tlsHostname', target.tlsHostname, host, 'a host name')}`,
    ...(options.identity
      ? [
          `identity ${word('identity.machineId', options.identity.machineId, /^[A-Za-z0-9._-]+$/, 'a machine id')} ${word('identity.stateDir', options.identity.stateDir, /^\/[A-Za-z0-9/._-]*$/, 'an absolute path')}`,
        ]
      : []),
    ...options.disks.map(
      (d, i) =>
        `disk ${word('device', d.device, isServerDevicePath, 'a device path under /dev')} ${word('array', d.array, isServerDevicePath, 'a device path under /dev')} ${word('exportName', d.exportName, /^[A-Za-z0-9._-]+$/, 'an export name (letters, digits, . _ -)')} ${rangesFileOf(i)}`,
    ),
    network === 'dhcp'
      ? 'network dhcp'
      : `network static ${word('network.address', network.address, /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'an IPv4 address with a prefix length')}${network.gateway ? ` ${word('network.gateway', network.gateway, /^\d{1,3}(\.\d{1,3}){3}$/, 'an IPv4 address')}` : ''}`,
    `then ${options.then ?? 'reboot'}`,
  ];
  return `${lines.join('\n')}\n`;
}

/** A failback's ranges checked (a negative or fractional one is refused), then merged as every region list is (mergeRegions). */
export function mergeRanges(ranges: readonly ByteRange[]): ByteRange[] {
  for (const r of ranges) {
    if (!Number.isSafeInteger(r.offset) || !Number.isSafeInteger(r.length) || r.offset < 0 || r.length < 0) {
      throw new HavenError(
        'validation_failed',
        `range ${r.offset}+${r.length} is not a byte offset and length (whole, not negative)`,
        { field: 'ranges' },
      );
    }
  }
  return mergeRegions(ranges);
}
