import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HavenError, notFound } from '../errors/index.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { readOptionalText } from '../storage/optional-file.ts';
import { PRIVATE_DIR_MODE } from '../storage/private-files.ts';
import { BridgeNetworks, type NetworkPlacement, networkPlacement } from './bridge-networks.ts';
import { readConsoleFile } from './console-file.ts';
import { pausedCannotStart, refuseChangeWhileOn, undefineWhenOff } from './driver-refusals.ts';
import type { ShutdownSteps } from './graceful-shutdown.ts';
import type {
  ConsoleLog,
  DiskMove,
  DomainDescription,
  FilesystemFreeze,
  Hypervisor,
  HypervisorInventory,
  MachineDefinition,
  MachinePowerState,
  MachineStatus,
} from './hypervisor.ts';
import { type StoredDefinition, validateMachineDefinition } from './machine-definition.ts';
import { parseNbdUri } from './nbd-uri.ts';
import { type QemuRunFiles, qemuCommandLine } from './qemu-command-line.ts';
import { findQemuProcesses, kill, livePid, waitForExit } from './qemu-process.ts';
import { QmpClient } from './qmp-client.ts';
import { QueuedDriver } from './queued-driver.ts';

export interface QemuDriverOptions {
  /** Holds one directory per machine: definition.json, qmp.sock, qemu.pid, console.log. */
  stateDir: string;
  /** Default 'tcg' (works everywhere); 'kvm' where /dev/kvm works. */
  accel?: 'tcg' | 'kvm';
  /** Default 'qemu-system-x86_64' from PATH. */
  qemuBinary?: string;
}

// Unix socket paths are limited to 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH = 107;
// How long QEMU gets to act on QMP 'quit' before SIGKILL, and to vanish after it.
const QUIT_GRACE_MS = 3000;
const KILL_WAIT_MS = 5000;
const START_TIMEOUT_MS = 60_000;

const QMP_STATE: Record<string, MachinePowerState> = { running: 'running', shutdown: 'shut-off' };

/**
 * The QEMU driver: machines as daemonized `qemu-system-x86_64` processes
 * controlled over QMP, their definitions kept as JSON in the state directory
 * so a restarted host agent finds (and re-attaches to) what it started. Disks
 * are NBD exports; NICs are taps in Linux bridges (see BridgeNetworks).
 * Operations on one machine run one at a time; `status` never waits for them.
 */
export class QemuDriver extends QueuedDriver implements Hypervisor {
  readonly stateDir: string;
  readonly #accel: 'tcg' | 'kvm';
  readonly #qemu: string;
  readonly #networks: BridgeNetworks;

  constructor(options: QemuDriverOptions) {
    super();
    this.stateDir = resolve(options.stateDir);
    this.#accel = options.accel ?? 'tcg';
    this.#qemu = options.qemuBinary ?? 'qemu-system-x86_64';
    this.#networks = new BridgeNetworks(this.stateDir);
  }

  /** Its machines as domains: NBD disks (size unknown here: the disk service knows it), bridge NICs. */
  async inventory(params: { name?: string } = {}): Promise<HypervisorInventory> {
    const names = params.name === undefined ? (await this.list()).map((m) => m.name) : [params.name];
    const domains: DomainDescription[] = [];
    for (const name of names) {
      const machine = await this.#readDefinition(name);
      if (!machine) continue;
      domains.push({
        name,
        uuid: null,
        cpus: machine.cpus,
        memoryMiB: machine.memoryMiB,
        state: await this.#state(name),
        disks: machine.disks.map((disk, index) => {
          const target = parseNbdUri(disk.nbdUri);
          return {
            target: `vd${String.fromCharCode(97 + index)}`,
            bus: 'virtio',
            device: 'disk',
            source: {
              type: 'nbd',
              export: target.export,
              socket: target.server.type === 'unix' ? target.server.path : null,
              host: target.server.type === 'inet' ? target.server.host : null,
              port: target.server.type === 'inet' ? Number(target.server.port) : null,
            },
            format: 'raw',
            virtualSizeBytes: null,
            snapshots: null,
            readOnly: false,
          };
        }),
        nics: machine.nics.map((nic) => ({
          mac: nic.mac,
          network: nic.network,
          type: 'bridge',
          model: 'virtio',
        })),
        boot: machine.boot ? { kind: 'kernel', ...machine.boot } : { kind: 'devices', devices: ['hd'] },
        consoleFile: this.#files(name).consoleLog,
        // Its machines get no guest agent channel: app-consistent points come from the vault's hook.
        guestAgent: false,
      });
    }
    return { driver: 'qemu', uri: null, domains };
  }

  async list(): Promise<MachineStatus[]> {
    let names: string[];
    try {
      names = (await readdir(join(this.stateDir, 'machines'))).sort();
    } catch {
      return [];
    }
    const statuses = await Promise.all(names.map((name) => this.status({ name })));
    return statuses.filter((status) => status.state !== 'absent');
  }

  async define(params: { machine: MachineDefinition }): Promise<MachineStatus> {
    const machine = validateMachineDefinition(params.machine);
    const files = this.#files(machine.name);
    if (files.qmpSocket.length > MAX_SOCKET_PATH) {
      throw new HavenError(
        'validation_failed',
        `machine '${machine.name}': its QMP socket path ${files.qmpSocket} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter name or state directory`,
        { machine: machine.name, field: 'name' },
      );
    }
    return this.exclusive(machine.name, async () => {
      const existing = await this.#readDefinition(machine.name);
      const state = await this.#state(machine.name);
      refuseChangeWhileOn(
        machine.name,
        state,
        () => existing !== undefined && JSON.stringify(existing) !== JSON.stringify(machine),
      );
      await mkdir(this.#dir(machine.name), { recursive: true, mode: PRIVATE_DIR_MODE });
      await writeFileAtomic(
        join(this.#dir(machine.name), 'definition.json'),
        `${JSON.stringify(machine, null, 2)}\n`,
      );
      return { name: machine.name, state: existing ? state : 'shut-off' };
    });
  }

  /** The stored definition (MACs filled in), or undefined. */
  async definition(name: string): Promise<StoredDefinition | undefined> {
    return this.#readDefinition(name);
  }

  async undefine(params: { name: string }): Promise<void> {
    const { name } = params;
    await this.exclusive(name, async () =>
      undefineWhenOff(name, await this.#state(name), async () => {
        await this.#cleanUpAfterExit(name);
        await rm(this.#dir(name), { recursive: true, force: true });
      }),
    );
  }

  async start(params: { name: string }): Promise<MachineStatus> {
    const { name } = params;
    return this.exclusive(name, async () => {
      const machine = await this.#definitionOrThrow(name);
      const state = await this.#state(name);
      if (state === 'running') return { name, state };
      if (state === 'paused') {
        throw pausedCannotStart(name);
      }
      await this.#checkBootFiles(machine);
      await this.#cleanUpAfterExit(name);
      const files = this.#files(name);
      await rotate(files.consoleLog);
      const taps = machine.nics.map((_, index) => this.#tapName(name, index));
      const args = qemuCommandLine(machine, files, { accel: this.#accel, taps });
      try {
        await this.#spawnDaemon(name, args);
        const qmp = await QmpClient.connect(files.qmpSocket, { label: name });
        try {
          for (const [index, nic] of machine.nics.entries()) {
            await this.#networks.plug(taps[index]!, networkPlacement(nic.network, nic.isolated === true));
          }
          await qmp.execute('cont');
        } finally {
          await qmp.close();
        }
      } catch (error) {
        await this.#endEveryProcess(name);
        await this.#cleanUpAfterExit(name);
        throw error;
      }
      return { name, state: 'running' };
    });
  }

  /**
   * Powers the machine off and then verifies, by scanning every process, that
   * no QEMU for it is left (a lost pidfile must not hide one). Safe on a
   * machine that is off or was never defined here.
   */
  async fence(params: { name: string }): Promise<MachineStatus> {
    const { name } = params;
    return this.exclusive(name, async () => {
      await this.#endEveryProcess(name);
      const defined = (await this.#readDefinition(name)) !== undefined;
      if (defined) await this.#cleanUpAfterExit(name);
      return { name, state: defined ? 'shut-off' : 'absent' };
    });
  }

  async status(params: { name: string }): Promise<MachineStatus> {
    const { name } = params;
    return { name, state: await this.#state(name) };
  }

  /**
   * Not offered: this driver's machines read their disks only as NBD exports
   * (its stored definitions have no image disks to restart from).
   */
  async moveDiskToImage(params: { name: string; diskId: string; image: string }): Promise<DiskMove> {
    await this.#definitionOrThrow(params.name);
    throw new HavenError(
      'not_available',
      `machine '${params.name}': the built-in QEMU driver does not move disks off their view to local images; its machines keep reading the view (use a libvirt host for that)`,
      { machine: params.name, diskId: params.diskId, driver: 'qemu' },
    );
  }

  /** Not offered: this driver gives its machines no guest agent channel. */
  async freezeFilesystems(params: { name: string }): Promise<FilesystemFreeze> {
    return this.#noGuestAgent(params.name);
  }

  async thawFilesystems(params: { name: string }): Promise<FilesystemFreeze> {
    return this.#noGuestAgent(params.name);
  }

  async #noGuestAgent(name: string): Promise<never> {
    await this.#definitionOrThrow(name);
    throw new HavenError(
      'not_available',
      `machine '${name}': the built-in QEMU driver gives its machines no guest agent channel, so it cannot freeze their file systems; app-consistent points of its machines come from the vault's hook (haven vault --app-consistency-hook)`,
      { machine: name, driver: 'qemu' },
    );
  }

  async consoleLog(params: { name: string; tail?: number }): Promise<ConsoleLog> {
    const { name, tail } = params;
    await this.#definitionOrThrow(name);
    return readConsoleFile(name, this.#files(name).consoleLog, tail);
  }

  /** Runs `action` over a fresh QMP connection to the machine (QEMU serves one client at a time). */
  async qmp<T>(name: string, action: (qmp: QmpClient) => Promise<T>): Promise<T> {
    return this.#qmp(name, action);
  }

  // ---- internals -----------------------------------------------------------

  async #state(name: string): Promise<MachinePowerState> {
    if ((await this.#readDefinition(name)) === undefined) return 'absent';
    const files = this.#files(name);
    if ((await livePid(files.pidFile, files.qmpSocket)) === undefined) return 'shut-off';
    try {
      const status = await this.#qmp(
        name,
        (qmp) => qmp.execute<{ status: string }>('query-status', undefined, { timeoutMs: 2000 }),
        2000,
      );
      return QMP_STATE[status.status] ?? 'paused';
    } catch {
      // It exited meanwhile, or its monitor is busy: the process is the truth.
      return (await livePid(files.pidFile, files.qmpSocket)) === undefined ? 'shut-off' : 'running';
    }
  }

  async #qmp<T>(name: string, action: (qmp: QmpClient) => Promise<T>, timeoutMs = 5000): Promise<T> {
    const qmp = await QmpClient.connect(this.#files(name).qmpSocket, { label: name, timeoutMs });
    try {
      return await action(qmp);
    } finally {
      await qmp.close();
    }
  }

  protected shutdownSteps(name: string): ShutdownSteps {
    let pid: number | undefined;
    return {
      alreadyOff: async () => {
        await this.#definitionOrThrow(name);
        const files = this.#files(name);
        pid = await livePid(files.pidFile, files.qmpSocket);
        if (pid !== undefined) return false;
        await this.#cleanUpAfterExit(name);
        return true;
      },
      powerDown: async (ms) => {
        await this.#qmp(name, (qmp) => qmp.execute('system_powerdown'));
        if (!(await waitForExit(pid as number, ms))) return false;
        await this.#cleanUpAfterExit(name);
        return true;
      },
      pause: async () => {
        await this.#qmp(name, (qmp) => qmp.execute('stop'));
        return 'paused';
      },
      powerOff: () => this.hardOff(name),
      state: () => this.#state(name),
    };
  }

  /** QMP quit, then SIGKILL; returns once the process is gone. */
  async #stopProcess(name: string): Promise<void> {
    const files = this.#files(name);
    const pid = await livePid(files.pidFile, files.qmpSocket);
    if (pid === undefined) return;
    try {
      await this.#qmp(
        name,
        (qmp) => qmp.execute('quit', undefined, { timeoutMs: QUIT_GRACE_MS }),
        QUIT_GRACE_MS,
      );
    } catch {
      // Its monitor is unusable or it is exiting already: SIGKILL below settles it.
    }
    if (await waitForExit(pid, QUIT_GRACE_MS)) return;
    kill(pid, 'SIGKILL');
    if (!(await waitForExit(pid, KILL_WAIT_MS))) {
      throw new HavenError('internal', `machine '${name}': QEMU process ${pid} survives SIGKILL`, {
        machine: name,
        pid,
      });
    }
  }

  /**
   * Ends the machine's QEMU, then verifies by scanning every process that
   * none is left (a lost pidfile, or a QEMU killed mid-start, must not hide one).
   */
  async #endEveryProcess(name: string): Promise<void> {
    const files = this.#files(name);
    await this.#stopProcess(name);
    for (const pid of await findQemuProcesses(files.qmpSocket)) {
      kill(pid, 'SIGKILL');
      await waitForExit(pid, KILL_WAIT_MS);
    }
    const left = await findQemuProcesses(files.qmpSocket);
    if (left.length > 0) {
      throw new HavenError(
        'internal',
        `machine '${name}' could not be fenced: QEMU process(es) ${left.join(', ')} survive SIGKILL`,
        { machine: name, pids: left },
      );
    }
  }

  /** Removes the run files of a QEMU that is gone and the network bridges nothing uses any more. */
  async #cleanUpAfterExit(name: string): Promise<void> {
    const files = this.#files(name);
    await rm(files.pidFile, { force: true });
    await rm(files.qmpSocket, { force: true });
    const machine = await this.#readDefinition(name);
    if (machine) {
      const placements: NetworkPlacement[] = machine.nics.map((nic) =>
        networkPlacement(nic.network, nic.isolated === true),
      );
      await this.#networks.release(placements);
    }
  }

  /** Runs QEMU with -daemonize: it exits once the machine is set up (paused), or with the reason it could not be. */
  async #spawnDaemon(name: string, args: string[]): Promise<void> {
    const child = spawn(this.#qemu, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
    });
    const exit = await new Promise<{ code: number | null; error?: NodeJS.ErrnoException }>((done) => {
      // An NBD server that accepts but never answers would hold QEMU's set-up forever.
      const timer = setTimeout(() => {
        stderr += `\nQEMU did not finish setting up within ${START_TIMEOUT_MS / 1000} s`;
        child.kill('SIGKILL');
      }, START_TIMEOUT_MS);
      child.on('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        done({ code: null, error });
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        done({ code });
      });
    });
    if (exit.error) {
      throw new HavenError(
        'not_available',
        exit.error.code === 'ENOENT'
          ? `${this.#qemu} is not installed on this host (Debian package qemu-system-x86)`
          : `cannot run ${this.#qemu}: ${exit.error.message}`,
        { machine: name, install: 'qemu-system-x86' },
      );
    }
    await sleep(10); // the last stderr chunk can trail the exit event
    if (exit.code !== 0) {
      const reason = stderr.trim() || `exit code ${exit.code}`;
      const diskUnreachable = /nbd|Failed to connect|Connection refused|No such file/i.test(reason);
      throw new HavenError(
        diskUnreachable ? 'unreachable' : 'internal',
        `QEMU could not start machine '${name}': ${reason}`,
        { machine: name, qemuStderr: reason },
      );
    }
  }

  async #checkBootFiles(machine: StoredDefinition): Promise<void> {
    if (!machine.boot) return;
    for (const [field, path] of [
      ['boot.kernel', machine.boot.kernel],
      ['boot.initrd', machine.boot.initrd],
    ] as const) {
      if (path === null) continue;
      try {
        await access(path);
      } catch {
        throw new HavenError(
          'not_found',
          `machine '${machine.name}': ${field} ${path} does not exist on this host`,
          {
            machine: machine.name,
            field,
          },
        );
      }
    }
  }

  /** Ends a defined machine's QEMU (not found otherwise) and tidies up after it. */
  protected async hardOff(name: string): Promise<MachinePowerState> {
    await this.#definitionOrThrow(name);
    await this.#stopProcess(name);
    await this.#cleanUpAfterExit(name);
    return 'shut-off';
  }

  async #definitionOrThrow(name: string): Promise<StoredDefinition> {
    const machine = await this.#readDefinition(name);
    if (!machine) throw notFound('machine', name);
    return machine;
  }

  async #readDefinition(name: string): Promise<StoredDefinition | undefined> {
    if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name)) return undefined;
    const text = await readOptionalText(join(this.#dir(name), 'definition.json'));
    return text === null ? undefined : (JSON.parse(text) as StoredDefinition);
  }

  #dir(name: string): string {
    return join(this.stateDir, 'machines', name);
  }

  #files(name: string): QemuRunFiles {
    const dir = this.#dir(name);
    return {
      qmpSocket: join(dir, 'qmp.sock'),
      pidFile: join(dir, 'qemu.pid'),
      consoleLog: join(dir, 'console.log'),
    };
  }

  /** Tap names are limited to 15 bytes; the hash keeps machines of different state dirs apart. */
  #tapName(name: string, index: number): string {
    const hash = createHash('sha256').update(`${this.stateDir}\0${name}`).digest('hex').slice(0, 10);
    return `hv${hash}n${index}`;
  }
}

export function createQemuDriver(options: QemuDriverOptions): QemuDriver {
  return new QemuDriver(options);
}

/** Keeps the previous run's console as console.log.1. */
async function rotate(path: string): Promise<void> {
  try {
    await rename(path, `${path}.1`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
