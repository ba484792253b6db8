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

export interface Hypervisor {
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
}
