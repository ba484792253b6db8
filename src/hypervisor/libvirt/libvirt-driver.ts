import { execFile } from 'node:child_process';
import { rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HavenError, notFound } from '../../errors/index.ts';
import type { NetworkPlacement } from '../bridge-networks.ts';
import { readConsoleFile } from '../console-file.ts';
import { pausedCannotStart, refuseChangeWhileOn, undefineWhenOff } from '../driver-refusals.ts';
import type { ShutdownSteps } from '../graceful-shutdown.ts';
import type {
  ConsoleLog,
  DiskMove,
  DomainDescription,
  DomainDisk,
  FilesystemFreeze,
  Hypervisor,
  HypervisorInventory,
  MachineDefinition,
  MachinePowerState,
  MachineStatus,
} from '../hypervisor.ts';
import { validateMachineDefinition } from '../machine-definition.ts';
import { findQemuProcesses, waitForExit } from '../qemu-process.ts';
import { QueuedDriver } from '../queued-driver.ts';
import {
  type DomainDefinition,
  diskBySerial,
  domainXml,
  parseDomainXml,
  type SerialDisk,
  withDiskOnImage,
} from './domain-xml.ts';
import {
  isolatedBridgeName,
  isolatedNetworkName,
  LibvirtIsolatedNetworks,
} from './libvirt-isolated-networks.ts';
import { LibvirtMirror } from './libvirt-mirror.ts';
import { Virsh } from './virsh.ts';

export interface LibvirtDriverOptions {
  /** libvirt connection URI, e.g. qemu:///system. */
  uri: string;
  /**
   * Where the serial consoles of the domains Haven defines are written. libvirt's
   * QEMU (user libvirt-qemu) must reach it; default /var/log/libvirt/qemu.
   */
  consoleDir?: string;
  /** 'qemu' (TCG, works everywhere; the default) or 'kvm' where /dev/kvm works. */
  domainType?: 'qemu' | 'kvm';
  /** Default 'virsh' and 'qemu-img' from PATH. */
  virshBinary?: string;
  qemuImgBinary?: string;
}

/** `virsh domstate` words; anything not clearly off counts as running (never a false "off"). */
const DOMSTATE: Record<string, MachinePowerState> = {
  running: 'running',
  idle: 'running',
  blocked: 'running',
  'in shutdown': 'running',
  dying: 'running',
  paused: 'paused',
  pmsuspended: 'paused',
  'shut off': 'shut-off',
  crashed: 'shut-off',
};
const POLL_MS = 200;
const KILL_WAIT_MS = 10_000;
/** Default bound of a guest agent freeze or thaw. */
const AGENT_TIMEOUT_MS = 30_000;

/**
 * The libvirt driver: machines are libvirt domains, driven through `virsh`
 * (no shell). Domains Haven defines boot from NBD exports like the QEMU
 * driver's machines; domains an operator defined are described as they are
 * (any disk format) for the inventory and `machines import`.
 */
export class LibvirtDriver extends QueuedDriver implements Hypervisor {
  readonly uri: string;
  readonly consoleDir: string;
  readonly #virsh: Virsh;
  readonly #domainType: 'qemu' | 'kvm';
  readonly #qemuImg: string;
  readonly #isolatedNetworks: LibvirtIsolatedNetworks;
  /** QEMU's active mirror of domains' disks into Haven's sinks (live protection). */
  readonly mirror: LibvirtMirror;

  constructor(options: LibvirtDriverOptions) {
    super();
    this.uri = options.uri;
    this.consoleDir = options.consoleDir ?? '/var/log/libvirt/qemu';
    this.#virsh = new Virsh(options.uri, options.virshBinary ? { binary: options.virshBinary } : {});
    this.#domainType = options.domainType ?? 'qemu';
    this.#qemuImg = options.qemuImgBinary ?? 'qemu-img';
    this.#isolatedNetworks = new LibvirtIsolatedNetworks(this.#virsh);
    this.mirror = new LibvirtMirror(this.#virsh, async (name) => {
      const state = await this.#state(name);
      return state === 'running' || state === 'paused';
    });
  }

  async inventory(params: { name?: string } = {}): Promise<HypervisorInventory> {
    const names = params.name === undefined ? await this.#names() : [params.name];
    const domains: DomainDescription[] = [];
    for (const name of names) {
      const described = await this.describe(name);
      if (described) domains.push(described);
    }
    return { driver: 'libvirt', uri: this.uri, domains };
  }

  /** One domain in full (disk sizes from `qemu-img info -U`), or undefined when it is not defined. */
  async describe(name: string): Promise<DomainDescription | undefined> {
    const definition = await this.#definition(name);
    if (!definition) return undefined;
    const disks = await Promise.all(definition.disks.map((disk) => this.#withImageInfo(disk)));
    return { ...definition, disks, state: await this.#state(name) };
  }

  async list(): Promise<MachineStatus[]> {
    const statuses: MachineStatus[] = [];
    for (const name of await this.#names()) {
      const state = await this.#state(name);
      if (state !== 'absent') statuses.push({ name, state });
    }
    return statuses;
  }

  async define(params: { machine: MachineDefinition }): Promise<MachineStatus> {
    const machine = validateMachineDefinition(params.machine);
    const xml = domainXml(machine, {
      consoleFile: this.#consoleFile(machine.name),
      domainType: this.#domainType,
    });
    return this.exclusive(machine.name, async () => {
      const existing = await this.#definition(machine.name);
      const state = existing ? await this.#state(machine.name) : 'absent';
      refuseChangeWhileOn(
        machine.name,
        state,
        () => existing !== undefined && !sameDefinition(existing, parseDomainXml(xml)),
      );
      await this.#defineXml(machine.name, xml);
      // Made after the domain that names it is defined: a release by another driver on this libvirt sees it in use.
      for (const nic of machine.nics.filter((n) => n.isolated)) {
        await this.#isolatedNetworks.ensure(isolatedNetworkName(nic.network), machine.name);
      }
      return { name: machine.name, state: existing ? state : 'shut-off' };
    });
  }

  async undefine(params: { name: string }): Promise<void> {
    const { name } = params;
    await this.exclusive(name, async () =>
      undefineWhenOff(name, await this.#state(name), async () => {
        await this.#virsh.run(['undefine', name], { domain: name });
        await rm(this.#consoleFile(name), { force: true });
      }),
    );
    await this.releaseIsolatedNetworks();
  }

  /**
   * Removes the isolated networks Haven made that no domain defined here
   * names any more: after a drill ends, and at the host's start (what a
   * failed step or a crash left behind).
   */
  /**
   * Where Haven's isolated libvirt network for `network` has its bridge (in
   * the host's namespace, with no address, forward or DHCP). Refused for any
   * other libvirt network, and when it is not running here.
   */
  async isolatedBridge(network: string): Promise<NetworkPlacement> {
    const libvirtNetwork = isolatedNetworkName(network);
    if (!(await this.#isolatedNetworks.isOurs(libvirtNetwork))) {
      throw new HavenError(
        'conflict',
        `isolated test network '${network}' is not running on this host (libvirt network ${libvirtNetwork} is absent or not one of Haven's isolated networks); a probe runs only while a drill machine is on it`,
        { network, libvirtNetwork },
      );
    }
    return { network, isolated: true, namespace: null, bridge: isolatedBridgeName(libvirtNetwork) };
  }

  releaseIsolatedNetworks(): Promise<string[]> {
    return this.#isolatedNetworks.release();
  }

  async start(params: { name: string }): Promise<MachineStatus> {
    const { name } = params;
    return this.exclusive(name, async () => {
      const state = await this.#stateOrThrow(name);
      if (state === 'running') return { name, state };
      if (state === 'paused') {
        throw pausedCannotStart(name);
      }
      // Also after a host reboot (libvirt does not start them) and whoever started it last.
      await this.#ensureIsolatedNetworks(name);
      await this.#virsh.run(['start', name], { domain: name });
      return { name, state: await this.#state(name) };
    });
  }

  /**
   * Stops the domain for good (autostart off, `virsh destroy`) and then
   * verifies it: libvirt reports it off or gone, and no QEMU process of that
   * domain is left. Safe on a domain that is off or not defined here.
   */
  async fence(params: { name: string }): Promise<MachineStatus> {
    const { name } = params;
    return this.exclusive(name, async () => {
      if ((await this.#state(name)) !== 'absent') {
        // A host reboot must not bring the fenced source back.
        await this.#virsh.run(['autostart', '--disable', name], { domain: name }).catch(ignoreRefusal);
        await this.#destroy(name);
      }
      const state = await this.#state(name);
      const marker = `guest=${name},`;
      for (const pid of await findQemuProcesses(marker)) await waitForExit(pid, KILL_WAIT_MS);
      const left = await findQemuProcesses(marker);
      if ((state !== 'shut-off' && state !== 'absent') || left.length > 0) {
        throw new HavenError(
          'internal',
          `machine '${name}' could not be fenced: libvirt reports it ${state}${left.length > 0 ? `, QEMU process(es) ${left.join(', ')} still run` : ''}`,
          { machine: name, state, pids: left },
        );
      }
      return { name, state };
    });
  }

  async status(params: { name: string }): Promise<MachineStatus> {
    return { name: params.name, state: await this.#state(params.name) };
  }

  async consoleLog(params: { name: string; tail?: number }): Promise<ConsoleLog> {
    const { name, tail } = params;
    const definition = await this.#definition(name);
    if (!definition) throw notFound('machine', name);
    if (!definition.consoleFile) {
      throw new HavenError(
        'not_available',
        `domain '${name}' writes its serial console to no file (<serial type='file'>), so Haven cannot read it`,
        { machine: name },
      );
    }
    return readConsoleFile(name, definition.consoleFile, tail);
  }

  /**
   * `virsh blockcopy --transient-job` (a persistent domain takes no other
   * copy job) to a new qcow2 image, then `blockjob --pivot` once the copy is
   * ready, checked in the live XML and in the stored definition (libvirt 9.0
   * updates it on the pivot; it is redefined when a libvirt did not).
   */
  async moveDiskToImage(params: { name: string; diskId: string; image: string }): Promise<DiskMove> {
    const { name, diskId, image } = params;
    return this.exclusive(name, async () => {
      const state = await this.#stateOrThrow(name);
      const live = await this.#diskBySerial(name, diskId, false);
      const target = live.disk.target;
      const answer = (moveState: DiskMove['state'], copiedBytes: number, totalBytes: number): DiskMove => ({
        name,
        diskId,
        image,
        state: moveState,
        copiedBytes,
        totalBytes,
      });
      if (onImage(live.disk, image)) {
        await this.#keepOnImageAfterRestart(name, diskId, image);
        const total = await this.#capacity(name, target);
        return answer('moved', total, total);
      }
      if (state !== 'running') {
        throw new HavenError(
          'operation_not_allowed',
          `machine '${name}' is ${state}: its disk ${diskId} is moved to a local image only while it runs`,
          { machine: name, state, diskId },
        );
      }
      if (live.mirrorFile !== null && live.mirrorFile !== image) {
        throw new HavenError(
          'conflict',
          `machine '${name}': disk ${diskId} (${target}) is being copied to '${live.mirrorFile}' by another block job; it cannot be moved to '${image}' meanwhile`,
          { machine: name, diskId, mirror: live.mirrorFile },
        );
      }
      const job = await this.#blockJob(name, target);
      if (job) {
        if (job.cur < job.end || job.end === 0) return answer('copying', job.cur, job.end);
        try {
          await this.#virsh.run(['blockjob', name, target, '--pivot'], { domain: name });
        } catch (error) {
          // Not ready after all (a write made the copy fall behind again): the next call tries again.
          if (error instanceof HavenError && /not ready|still active/i.test(error.message))
            return answer('copying', job.cur, job.end);
          throw error;
        }
        const after = await this.#diskBySerial(name, diskId, false);
        if (!onImage(after.disk, image)) {
          throw new HavenError(
            'internal',
            `machine '${name}': after the switch libvirt reports disk ${diskId} reading ${describeSource(after.disk)}, not '${image}'`,
            { machine: name, diskId, image },
          );
        }
        await this.#keepOnImageAfterRestart(name, diskId, image);
        return answer('moved', job.end, job.end);
      }
      if (await exists(image)) {
        throw new HavenError(
          'conflict',
          `machine '${name}': the copy of disk ${diskId} to '${image}' ended without the switch (libvirt reports no copy job); the machine still reads ${describeSource(live.disk)}. The partial image '${image}' is left for you to remove`,
          { machine: name, diskId, image },
        );
      }
      await refuseWorldWritableFolder(name, image);
      await this.#virsh.run(
        ['blockcopy', name, target, '--dest', image, '--format', 'qcow2', '--transient-job'],
        { domain: name },
      );
      return answer('copying', 0, await this.#capacity(name, target));
    });
  }

  /**
   * `virsh domfsfreeze`: libvirt asks the guest agent to freeze every file
   * system. Not queued behind the domain's other operations: the thaw must
   * never wait for them (libvirt itself runs one agent command at a time).
   * virsh is killed after `timeoutMs`; libvirt may still complete the freeze
   * later, which is why the caller always thaws.
   */
  async freezeFilesystems(params: { name: string; timeoutMs?: number }): Promise<FilesystemFreeze> {
    return this.#agentFilesystems(params, 'domfsfreeze', /Froze (\d+) filesystem/);
  }

  /** `virsh domfsthaw` (a thaw queued in libvirt behind a freeze still pending runs after it). */
  async thawFilesystems(params: { name: string; timeoutMs?: number }): Promise<FilesystemFreeze> {
    return this.#agentFilesystems(params, 'domfsthaw', /Thawed (\d+) filesystem/);
  }

  async #agentFilesystems(
    params: { name: string; timeoutMs?: number },
    command: 'domfsfreeze' | 'domfsthaw',
    answer: RegExp,
  ): Promise<FilesystemFreeze> {
    const { name } = params;
    const out = await this.#virsh.run([command, name], {
      domain: name,
      timeoutMs: params.timeoutMs ?? AGENT_TIMEOUT_MS,
    });
    const count = answer.exec(out)?.[1];
    if (count === undefined) {
      throw new HavenError('internal', `machine '${name}': 'virsh ${command}' answered '${out.trim()}'`, {
        machine: name,
      });
    }
    return { name, filesystems: Number(count) };
  }

  // ---- internals -----------------------------------------------------------

  /** The isolated networks of Haven's the domain's NICs are on: running and sealed off from the host. */
  async #ensureIsolatedNetworks(name: string): Promise<void> {
    const definition = await this.#definition(name);
    for (const nic of definition?.nics ?? []) {
      if (
        nic.type === 'network' &&
        nic.network !== null &&
        (await this.#isolatedNetworks.isOurs(nic.network))
      )
        await this.#isolatedNetworks.ensure(nic.network, name);
    }
  }

  async #defineXml(name: string, xml: string): Promise<void> {
    await this.#virsh.defineXml('define', xml, { domain: name });
  }

  async #diskBySerial(name: string, diskId: string, inactive: boolean): Promise<SerialDisk> {
    const xml = await this.#virsh.run(['dumpxml', ...(inactive ? ['--inactive'] : []), name], {
      domain: name,
    });
    const found = diskBySerial(xml, diskId);
    if (!found) {
      throw new HavenError('not_found', `machine '${name}' has no disk with serial '${diskId}'`, {
        machine: name,
        diskId,
      });
    }
    return found;
  }

  /** The stored definition reads the image too, so the next start of the domain does not go back to the view. */
  async #keepOnImageAfterRestart(name: string, diskId: string, image: string): Promise<void> {
    if (onImage((await this.#diskBySerial(name, diskId, true)).disk, image)) return;
    const stored = await this.#virsh.run(['dumpxml', '--inactive', name], { domain: name });
    await this.#defineXml(name, withDiskOnImage(stored, diskId, image));
    const again = await this.#diskBySerial(name, diskId, true);
    if (!onImage(again.disk, image)) {
      throw new HavenError(
        'internal',
        `machine '${name}': its stored definition still reads disk ${diskId} from ${describeSource(again.disk)}, not '${image}'`,
        { machine: name, diskId, image },
      );
    }
  }

  /** The block job on `target` (`virsh blockjob --info --raw`: cur and end in bytes), or undefined. */
  async #blockJob(name: string, target: string): Promise<{ cur: number; end: number } | undefined> {
    const out = await this.#virsh.run(['blockjob', name, target, '--info', '--raw'], { domain: name });
    const cur = /\bcur=(\d+)/.exec(out)?.[1];
    const end = /\bend=(\d+)/.exec(out)?.[1];
    return cur === undefined || end === undefined ? undefined : { cur: Number(cur), end: Number(end) };
  }

  async #capacity(name: string, target: string): Promise<number> {
    const out = await this.#virsh.run(['domblkinfo', name, target], { domain: name });
    return Number(/^Capacity:\s+(\d+)/m.exec(out)?.[1] ?? 0);
  }

  async #names(): Promise<string[]> {
    const out = await this.#virsh.run(['list', '--all', '--name']);
    return out
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean)
      .sort();
  }

  async #definition(name: string): Promise<DomainDefinition | undefined> {
    try {
      return parseDomainXml(await this.#virsh.run(['dumpxml', '--inactive', name], { domain: name }));
    } catch (error) {
      if (error instanceof HavenError && error.code === 'not_found') return undefined;
      throw error;
    }
  }

  async #state(name: string): Promise<MachinePowerState> {
    try {
      const out = (await this.#virsh.run(['domstate', name], { domain: name })).trim();
      return DOMSTATE[out] ?? 'running';
    } catch (error) {
      if (error instanceof HavenError && error.code === 'not_found') return 'absent';
      throw error;
    }
  }

  async #stateOrThrow(name: string): Promise<MachinePowerState> {
    const state = await this.#state(name);
    if (state === 'absent') throw notFound('machine', name);
    return state;
  }

  async #waitForState(name: string, wanted: MachinePowerState, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = await this.#state(name);
      if (state === wanted || (wanted === 'shut-off' && state === 'absent')) return true;
      if (Date.now() >= deadline) return false;
      await sleep(Math.min(POLL_MS, Math.max(1, deadline - Date.now())));
    }
  }

  protected shutdownSteps(name: string): ShutdownSteps {
    return {
      alreadyOff: async () => (await this.#stateOrThrow(name)) === 'shut-off',
      powerDown: async (ms) => {
        await this.#virsh.run(['shutdown', name, '--mode', 'acpi'], { domain: name });
        return this.#waitForState(name, 'shut-off', ms);
      },
      pause: async () => {
        await this.#virsh.run(['suspend', name], { domain: name });
        return this.#state(name);
      },
      powerOff: () => this.hardOff(name),
      state: () => this.#state(name),
    };
  }

  /** `virsh destroy`; a domain that is not running is already where this wants it. */
  async #destroy(name: string): Promise<void> {
    await this.#virsh.run(['destroy', name], { domain: name }).catch(ignoreRefusal);
  }

  async #withImageInfo(disk: DomainDisk): Promise<DomainDisk> {
    if (disk.source.type !== 'file' && disk.source.type !== 'block') return disk;
    // -U: a running domain's QEMU holds the image's write lock; reading its header is still safe.
    const args = ['info', '-U', '--output=json', disk.source.path];
    if (disk.format) args.splice(3, 0, '-f', disk.format);
    const info = await new Promise<{ 'virtual-size'?: number; snapshots?: unknown[] } | undefined>(
      (resolve) => {
        execFile(this.#qemuImg, args, { timeout: 30_000, encoding: 'utf8' }, (error, stdout) => {
          if (error) return resolve(undefined);
          try {
            resolve(JSON.parse(stdout));
          } catch {
            resolve(undefined);
          }
        });
      },
    );
    return {
      ...disk,
      virtualSizeBytes: info?.['virtual-size'] ?? null,
      snapshots: info ? (info.snapshots?.length ?? 0) : null,
    };
  }

  #consoleFile(name: string): string {
    return join(this.consoleDir, `${name}-console.log`);
  }

  /** `virsh destroy` of a defined domain (not found otherwise); returns its state. */
  protected async hardOff(name: string): Promise<MachinePowerState> {
    await this.#stateOrThrow(name);
    await this.#destroy(name);
    return this.#state(name);
  }
}

export function createLibvirtDriver(options: LibvirtDriverOptions): LibvirtDriver {
  return new LibvirtDriver(options);
}

function onImage(disk: DomainDisk, image: string): boolean {
  return disk.source.type === 'file' && disk.source.path === image && disk.format === 'qcow2';
}

function describeSource(disk: DomainDisk): string {
  const { source } = disk;
  if (source.type === 'file' || source.type === 'block') return `'${source.path}'`;
  if (source.type === 'nbd') return `NBD export '${source.export}'`;
  return source.type === 'other' ? source.description : 'no source';
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return false;
      throw error;
    },
  );
}

/** Another local user must not be able to swap the image under the hypervisor. */
async function refuseWorldWritableFolder(name: string, image: string): Promise<void> {
  const folder = dirname(image);
  const mode = (await stat(folder)).mode;
  if ((mode & 0o002) !== 0) {
    throw new HavenError(
      'bad_request',
      `image: machine '${name}': the folder '${folder}' of '${image}' is writable by every user (mode ${(mode & 0o7777).toString(8)}); choose a storage folder that is not`,
      { field: 'image', machine: name, folder },
    );
  }
}

/** "Not running" or "not defined" from libvirt: the state the caller wanted already holds. */
function ignoreRefusal(error: unknown): void {
  if (error instanceof HavenError && (error.code === 'operation_not_allowed' || error.code === 'not_found'))
    return;
  throw error;
}

/** What Haven defines of a domain, compared (libvirt adds defaults of its own to the XML it stores). */
function sameDefinition(a: DomainDefinition, b: DomainDefinition): boolean {
  const essentials = (d: DomainDefinition) =>
    JSON.stringify({
      cpus: d.cpus,
      memoryMiB: d.memoryMiB,
      disks: d.disks.map((disk) => [disk.target, disk.source]),
      nics: d.nics.map((nic) => [nic.mac, nic.network]),
      boot: d.boot,
    });
  return essentials(a) === essentials(b);
}
