/**
 * What a host's hypervisor driver does for the vault: define, start, stop and
 * fence machines, and read their consoles. The built-in QEMU driver implements
 * it; the host agent serves it as the "hypervisor" service.
 */
import type { IpConfig } from '../domain/index.ts';

export interface MachineNic {
  /** Network name at this host: a Linux bridge of that name (created on demand when missing). */
  network: string;
  /** Null: the driver derives a stable one from the machine name. */
  mac: string | null;
  /**
   * Isolated networks (test failover) live in their own network namespace with
   * no uplink, apart from every production bridge: a drill cannot reach production.
   */
  isolated?: boolean;
  /** Carried to the guest (kernel command line for a kernel boot), never silently DHCP (SPEC §5). */
  ip?: IpConfig;
}

/** Direct kernel boot (the test guest) instead of booting from the first disk. */
export interface MachineKernelBoot {
  kernel: string;
  initrd: string | null;
  cmdline: string;
}

export interface MachineDefinition {
  name: string;
  /**
   * The domain's UUID, for drivers that have one (libvirt); absent: the driver
   * picks one. A recovered copy gets its own, so it never collides with its source.
   */
  uuid?: string;
  cpus: number;
  memoryMiB: number;
  disks: Array<{ diskId: string; nbdUri: string }>;
  nics: MachineNic[];
  boot?: MachineKernelBoot;
}

export type MachinePowerState = 'running' | 'paused' | 'shut-off' | 'absent';

export interface MachineStatus {
  name: string;
  state: MachinePowerState;
}

/**
 * What a shutdown did: the guest powered itself down, it was already off, or
 * it ignored the request until the timeout and was then stopped (paused: it
 * cannot write any more) or powered off, as `onTimeout` asked.
 */
export type ShutdownOutcome = 'powered-down' | 'already-off' | 'stopped' | 'powered-off';

export interface ShutdownResult extends MachineStatus {
  outcome: ShutdownOutcome;
  seconds: number;
}

export interface ConsoleLog {
  name: string;
  /** Console lines of the current (or last) run, oldest first, terminal escapes removed. */
  lines: string[];
}

/**
 * Where a live move of a running machine's disk from its NBD export to a
 * local image stands: `copying` while the background copy runs (the guest
 * reads and writes the export meanwhile), `moved` once the machine reads and
 * writes the image, checked with the hypervisor after the switch (its stored
 * definition too, so a restart reads the image).
 */
export interface DiskMove {
  name: string;
  diskId: string;
  image: string;
  state: 'copying' | 'moved';
  copiedBytes: number;
  totalBytes: number;
}

/** A disk of a domain as its hypervisor defines it (what the host's inventory reports). */
export interface DomainDisk {
  /** The guest's device name, e.g. 'vda', 'sda'. */
  target: string;
  /** virtio, scsi, sata, ide... */
  bus: string;
  /** disk, cdrom, floppy, lun. */
  device: string;
  /** Where the hypervisor reads it from: an image file, a block device (LVM...), or an NBD export. */
  source:
    | { type: 'file' | 'block'; path: string }
    | { type: 'nbd'; export: string; socket: string | null; host: string | null; port: number | null }
    | { type: 'none' }
    | { type: 'other'; description: string };
  /** Image format the hypervisor opens it as ('qcow2', 'raw'...); null when it does not say. */
  format: string | null;
  /** Size the guest sees (`qemu-img info`); null when it could not be read (NBD, missing image). */
  virtualSizeBytes: number | null;
  /** Internal snapshots in the image (qcow2); null when unknown. */
  snapshots: number | null;
  readOnly: boolean;
}

export interface DomainNic {
  mac: string | null;
  /** Linux bridge or libvirt network it is connected to (the name a site's network mapping uses). */
  network: string | null;
  /** libvirt's interface type: bridge, network, direct, user... */
  type: string;
  /** Device model, e.g. 'virtio'. */
  model: string | null;
}

/** How the domain boots: a kernel given to the hypervisor, or its firmware trying devices in order. */
export type DomainBoot = ({ kind: 'kernel' } & MachineKernelBoot) | { kind: 'devices'; devices: string[] };

/** A domain (machine) as its hypervisor defines it, with its power state. */
export interface DomainDescription {
  name: string;
  /** libvirt's UUID; null for the built-in QEMU driver, which names machines only. */
  uuid: string | null;
  cpus: number;
  memoryMiB: number;
  state: MachinePowerState;
  disks: DomainDisk[];
  nics: DomainNic[];
  boot: DomainBoot;
  /** The file its serial console is written to, when it has one. */
  consoleFile: string | null;
  /**
   * It has a QEMU guest agent channel (libvirt: `<channel type='unix'>` with
   * target `org.qemu.guest_agent.0`): its file systems can be frozen for
   * app-consistent points, if an agent in the guest answers.
   */
  guestAgent: boolean;
}

/** What a freeze or thaw of a guest's file systems through its guest agent did. */
export interface FilesystemFreeze {
  name: string;
  /** File systems the agent froze (or thawed). */
  filesystems: number;
}

/** What a host's hypervisor runs: its driver, and every domain defined there. */
export interface HypervisorInventory {
  driver: 'qemu' | 'libvirt';
  /** The libvirt connection URI (e.g. qemu:///system); null for the built-in QEMU driver. */
  uri: string | null;
  domains: DomainDescription[];
}

export interface Hypervisor {
  /** Every domain defined here, described in full (`name`: only that one, none when it is not defined). */
  inventory(params?: { name?: string }): Promise<HypervisorInventory>;
  list(params?: Record<string, never>): Promise<MachineStatus[]>;
  define(params: { machine: MachineDefinition }): Promise<MachineStatus>;
  undefine(params: { name: string }): Promise<void>;
  start(params: { name: string }): Promise<MachineStatus>;
  /**
   * Clean guest shutdown (ACPI powerdown). After `timeoutSeconds` with the
   * machine still running it fails (onTimeout 'fail', the default), or
   * stops (pauses) or powers off the machine and says so in `outcome`.
   */
  shutdown(params: {
    name: string;
    timeoutSeconds: number;
    onTimeout?: 'fail' | 'stop' | 'power-off';
  }): Promise<ShutdownResult>;
  powerOff(params: { name: string }): Promise<MachineStatus>;
  status(params: { name: string }): Promise<MachineStatus>;
  /** Makes sure the machine cannot run or write here any more (before its copy starts elsewhere). */
  fence(params: { name: string }): Promise<MachineStatus>;
  /** The serial console of the current or last run; `tail` keeps the last lines only. */
  consoleLog(params: { name: string; tail?: number }): Promise<ConsoleLog>;
  /**
   * Moves a running machine's disk (the one whose serial is `diskId`) off the
   * NBD export it reads now onto a new local qcow2 image at `image`, live.
   * Called again until it answers `moved`: each call starts the copy when none
   * runs, reports its progress, and once the copy mirrors every guest write,
   * switches the machine to the image and verifies it. Safe to repeat; a copy
   * that ended without the switch fails, the machine still on its export.
   */
  moveDiskToImage(params: { name: string; diskId: string; image: string }): Promise<DiskMove>;
  /**
   * Freezes the running guest's file systems through its guest agent (each
   * one flushed, then writes held in the guest) for an app-consistent point;
   * fails after `timeoutMs` (default 30 s) when the agent does not answer.
   * The caller thaws, always, also after a failed or abandoned freeze.
   */
  freezeFilesystems(params: { name: string; timeoutMs?: number }): Promise<FilesystemFreeze>;
  /** Thaws what `freezeFilesystems` froze (none frozen: 0), within `timeoutMs` (default 30 s). */
  thawFilesystems(params: { name: string; timeoutMs?: number }): Promise<FilesystemFreeze>;
}
