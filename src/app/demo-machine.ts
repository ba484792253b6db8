import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { ApiClient } from '../client/api-client.ts';
import type { Host, Machine } from '../domain/model.ts';
import { buildGuestImage, formatDataDisk, guestCommandLine } from '../guest/index.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { PRIVATE_DIR_MODE } from '../storage/private-files.ts';
import { POWER_STATES, startMachine } from '../vault/machine-power.ts';
import type { VaultContext } from '../vault/vault-context.ts';

export const DEMO_MACHINE = 'demo-01';
const DEMO_DISK_BYTES = 256 << 20;

/** What a guest machine is made of: the test guest's boot, an ext4 data disk, and a record workload. */
export interface GuestMachineSpec {
  name: string;
  hostId: string;
  /** The data disk image; formatted ext4 when it does not exist yet. */
  disk: string;
  sizeBytes: number;
  /** Records written per second by the guest's workload. */
  rate?: number;
  log?: (line: string) => void;
}

/** The test guest's kernel and initramfs, where a host may read them from. */
export interface GuestBootFiles {
  kernel: string;
  initrd: string;
}

/** Writes `contents` to `path` unless the file there already holds exactly that. */
async function writeUnlessSame(path: string, contents: Buffer): Promise<void> {
  const existing = await readFile(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (existing?.equals(contents)) return;
  await writeFileAtomic(path, contents);
}

/**
 * The test guest's kernel and initramfs, copied from the build cache into
 * `folder`: a host lets a machine boot only from files inside its storage
 * folders (storage-folders.ts), and the cache is not one.
 */
export async function copyGuestBoot(
  folder: string,
  options: { log?: (line: string) => void } = {},
): Promise<GuestBootFiles> {
  const image = await buildGuestImage(options.log ? { log: options.log } : {});
  await mkdir(folder, { recursive: true, mode: PRIVATE_DIR_MODE });
  const files = {
    kernel: join(folder, 'haven-guest.vmlinuz'),
    initrd: join(folder, 'haven-guest.initramfs'),
  };
  await writeUnlessSame(files.kernel, await readFile(image.kernel));
  await writeUnlessSame(files.initrd, await readFile(image.initramfs));
  return files;
}

/**
 * Registers a machine running the tiny test guest (not started: see
 * startMachine), booting from copies of the guest's kernel and initramfs
 * beside its disk (a storage folder).
 */
export async function createGuestMachine(api: ApiClient, spec: GuestMachineSpec): Promise<Machine> {
  const boot = await copyGuestBoot(dirname(spec.disk), spec.log ? { log: spec.log } : {});
  if (!existsSync(spec.disk)) await formatDataDisk(spec.disk, { sizeBytes: spec.sizeBytes });
  return api.post<Machine>('/machines', {
    name: spec.name,
    hostId: spec.hostId,
    disks: [{ id: 'disk0', sizeBytes: spec.sizeBytes, source: spec.disk }],
    recoverySettings: {
      targetName: spec.name,
      cpus: 1,
      memoryMiB: 128,
      nics: [],
      boot: {
        kernel: boot.kernel,
        initrd: boot.initrd,
        cmdline: guestCommandLine({ workload: 'records', rate: spec.rate ?? 2 }),
      },
    },
  });
}

/**
 * The demo machine `haven up` offers: the tiny test guest (kernel + busybox
 * initramfs built from Debian packages) with an ext4 data disk, running on
 * the primary host with its disk behind the disk service, writing numbered,
 * checksummed records. Unprotected: protecting it is the tutorial's first step.
 */
export async function ensureDemoMachine(
  api: ApiClient,
  vault: VaultContext,
  dataDir: string,
  log: (line: string) => void,
): Promise<{ machine: Machine; running: boolean }> {
  const { hosts } = await api.get<{ hosts: Host[] }>('/hosts');
  const primary = hosts.find((h) => h.name === 'primary');
  if (!primary) throw new Error('the primary host is not enrolled');
  const machine =
    (await api.get<{ machines: Machine[] }>('/machines')).machines.find((m) => m.name === DEMO_MACHINE) ??
    (await createGuestMachine(api, {
      name: DEMO_MACHINE,
      hostId: primary.id,
      disk: resolve(dataDir, 'demo', `${DEMO_MACHINE}.img`),
      sizeBytes: DEMO_DISK_BYTES,
      log,
    }));
  // `haven up` stops its machines when it stops; the demo comes back with it while it rests on the
  // primary (unprotected or protected). A failed-over or busy demo is left to the lifecycle operations.
  const running =
    POWER_STATES.includes(machine.state) &&
    machine.currentJobId === null &&
    machine.activeHostId === primary.id &&
    (await startMachine(vault, machine)).state === 'running';
  return { machine, running };
}
