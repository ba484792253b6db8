/**
 * The host's side of its physical servers (the `servers` host service): the
 * agents' enrolment and reports (through ServerAgentEndpoint), the commands
 * queued for them, the state of each server's md legs, and which servers'
 * certificates are no longer accepted: forgotten ones, and fenced ones (the
 * server failed over and must stay off). Enrolled, forgotten and fenced
 * servers are kept in `<dataDir>/servers/links.json`.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DiskService as CoreDiskService } from '../disk/disk-service.ts';
import type {
  ServerAgentReport,
  ServerFailbackReport,
  ServerLegState,
  ServerLinkSnapshot,
} from '../domain/index.ts';
import { DISK_ID_PATTERN } from '../domain/index.ts';
import { HavenError } from '../errors/index.ts';
import { buildRecoveryEnvironment } from '../server-agent/recovery-environment.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { readOptionalText } from '../storage/optional-file.ts';
import { PRIVATE_DIR_MODE } from '../storage/private-files.ts';
import { bmcCall } from './bmc.ts';
import { exportNameOf, refOf } from './host-disk-service.ts';
import type {
  BmcAccess,
  BmcAction,
  BmcPower,
  DiskService as HostDiskService,
  ServerEndpoint,
  ServerEnrolment,
  ServerFailbackMedia,
  ServerFailbackMediaRequest,
  ServerLinkService,
} from './host-services.ts';
import { checkCsrPem, type ServerCa } from './server-ca.ts';

/** Where a server's agent keeps its state unless told otherwise (haven-server-agent's default). */
const AGENT_STATE_DIR = '/etc/haven';

/** How often agents report, unless told otherwise. */
const DEFAULT_REPORT_INTERVAL_SECONDS = 10;
/** A report older than this many intervals means the agent (or its link) is gone. */
const SILENT_AFTER_INTERVALS = 3;
const MAX_SHUTDOWN_WAIT_MS = 10 * 60_000;

type ServerCommand = 'shutdown' | `readd ${string}`;

interface LinksFile {
  enrolled: string[];
  forgotten: string[];
  fenced: Record<string, string>;
}

/** Why a fenced server's legs and reports are refused. */
const mustStayOff = (reason: string) => `failed over: this server must stay off (${reason})`;

export interface ServerLinksOptions {
  dataDir: string;
  endpoint: ServerEndpoint;
  ca: Pick<ServerCa, 'signClient'>;
  /** The disk service core: the legs' md state and connections. */
  core: Pick<CoreDiskService, 'list' | 'journalStatus' | 'disconnectServer' | 'confirmServerLeg'>;
  /** The host's disk operations (saved across restarts): attaches and detaches the legs' exports. */
  disks: Pick<HostDiskService, 'attach' | 'detach' | 'list'>;
  /** Redeems a one-time enrolment token with the vault (control channel `servers.redeemEnrolment`). */
  redeemEnrolment(token: string): Promise<ServerEnrolment>;
  reportIntervalSeconds?: number;
  log?: (line: string) => void;
  /** Builds a recovery environment (tests give a stand-in: the real one builds a kernel and initramfs). */
  buildRecoveryEnvironment?: typeof buildRecoveryEnvironment;
}

/**
 * What a server's protection is, from its legs and its agent's last report
 * (the contract's rule): in-sync only when every leg is md-in-sync, allows
 * points and is connected, and a fresh report says every array is whole and idle.
 */
export function serverLinkStateOf(input: {
  enrolled: boolean;
  legs: readonly ServerLegState[];
  agent: ServerAgentReport | null;
  nowMs: number;
  reportIntervalSeconds: number;
}): Pick<ServerLinkSnapshot, 'state' | 'problem'> {
  const { legs, agent } = input;
  if (!input.enrolled && agent === null) {
    return {
      state: 'awaiting-enrolment',
      problem: 'the server agent has not enrolled yet (haven-server-agent enrol)',
    };
  }
  const silentAfterMs = SILENT_AFTER_INTERVALS * input.reportIntervalSeconds * 1000;
  if (agent === null) {
    return { state: 'agent-silent', problem: 'no report from the server agent since this host started' };
  }
  const ageMs = input.nowMs - Date.parse(agent.receivedAt);
  if (agent.stopping) {
    return {
      state: 'agent-silent',
      problem: `the server agent reported at ${agent.receivedAt} that the server is shutting down`,
    };
  }
  if (ageMs > silentAfterMs) {
    return {
      state: 'agent-silent',
      problem: `no report from the server agent for ${Math.round(ageMs / 1000)} s (expected every ${input.reportIntervalSeconds} s): the server or its link is down`,
    };
  }
  if (agent.failback) {
    const { phase, copiedBytes, totalBytes, problem } = agent.failback;
    return {
      state: 'degraded',
      problem:
        phase === 'failed'
          ? `failback onto the server failed in its recovery environment: ${problem ?? 'no reason given'}`
          : phase === 'done'
            ? `the recovery environment wrote the failback (${copiedBytes} bytes); the server boots its own system`
            : `failback onto the server: its recovery environment copied ${copiedBytes} of ${totalBytes} bytes`,
    };
  }
  if (legs.length === 0)
    return { state: 'degraded', problem: 'no md leg of this server is attached on this host' };
  const problems: { degraded: string[]; syncing: string[] } = { degraded: [], syncing: [] };
  for (const leg of legs) {
    const reported = agent.disks.find((d) => d.diskId === leg.diskId);
    if (!leg.connected) problems.degraded.push(`disk ${leg.diskId}: its NBD leg is not connected`);
    if (reported === undefined) {
      problems.degraded.push(`disk ${leg.diskId}: the server agent does not report it`);
    } else if (reported.action === 'degraded' || reported.legs.includes('_')) {
      problems.degraded.push(`disk ${leg.diskId}: ${reported.array} is degraded ${reported.legs}`);
    } else if (reported.action !== 'idle') {
      const progress = reported.progressPercent === null ? '' : ` ${reported.progressPercent}%`;
      problems.syncing.push(`disk ${leg.diskId}: ${reported.array} ${reported.action}${progress}`);
    }
    if (leg.md !== 'in-sync' || !leg.pointsAllowed) {
      const what =
        leg.md === 'unknown'
          ? 'no md superblock seen on its leg yet'
          : leg.md === 'in-sync'
            ? 'its leg is not yet trusted for points'
            : `its leg is ${leg.md}${leg.syncedBytes === null ? '' : ` (${leg.syncedBytes} of ${leg.sizeBytes} bytes)`}`;
      problems.syncing.push(`disk ${leg.diskId}: ${what}`);
    }
  }
  if (problems.degraded.length > 0) return { state: 'degraded', problem: problems.degraded.join('; ') };
  if (problems.syncing.length > 0) return { state: 'syncing', problem: problems.syncing.join('; ') };
  return { state: 'in-sync', problem: null };
}

const ACTIONS = new Set(['idle', 'resync', 'recovery', 'degraded']);

/** Parses an agent's report body (contract: `key value...` lines); a malformed one is a 400 naming the line. */
export function parseServerReport(body: string, receivedAt: string): ServerAgentReport {
  const report: ServerAgentReport = {
    receivedAt,
    hostname: '',
    agentVersion: '',
    stopping: false,
    disks: [],
  };
  const bad = (line: string, why: string) =>
    new HavenError('bad_request', `report line '${line.slice(0, 80)}': ${why}`, { field: 'report' });
  const optionalNumber = (value: string, line: string): number | null => {
    if (value === '-') return null;
    const n = Number(value.replace(/%$/, ''));
    if (!Number.isFinite(n) || n < 0) throw bad(line, `'${value.slice(0, 20)}' is not a number or -`);
    return n;
  };
  for (const line of body.split('\n').map((l) => l.trim())) {
    if (line === '') continue;
    const [key, ...words] = line.split(/\s+/);
    if (key === 'hostname') report.hostname = words.join(' ').slice(0, 253);
    else if (key === 'version') report.agentVersion = words.join(' ').slice(0, 64);
    else if (key === 'state') {
      if (words[0] !== 'running' && words[0] !== 'stopping' && words[0] !== 'failback')
        throw bad(line, 'state is running, stopping or failback');
      report.stopping = words[0] === 'stopping';
    } else if (key === 'failback') {
      // The recovery environment: failback PHASE COPIED TOTAL MS [WHY...]
      const [phase = '', copied = '', total = '', ms = '', ...why] = words;
      if (phase !== 'copying' && phase !== 'done' && phase !== 'failed')
        throw bad(line, 'the failback phase is copying, done or failed');
      const count = (value: string) => {
        const n = optionalNumber(value, line);
        if (n === null) throw bad(line, 'expected failback PHASE COPIED TOTAL MS [WHY]');
        return n;
      };
      report.failback = {
        phase,
        copiedBytes: count(copied),
        totalBytes: count(total),
        elapsedMs: count(ms),
        problem: why.length > 0 ? why.join(' ').slice(0, 300) : null,
      };
    } else if (key === 'disk') {
      const [diskId = '', array = '', legs = '', action = '', percent = '', dirty = '', events = '-'] = words;
      if (words.length !== 6 && words.length !== 7)
        throw bad(line, 'expected disk ID ARRAY LEGS ACTION PERCENT DIRTY [EVENTS]');
      if (!DISK_ID_PATTERN.test(diskId)) throw bad(line, `'${diskId.slice(0, 60)}' is not a disk id`);
      if (!ACTIONS.has(action)) throw bad(line, 'the action is idle, resync, recovery or degraded');
      if (!/^\[[U_]+\]$/.test(legs)) throw bad(line, `legs '${legs.slice(0, 20)}' is not like [UU]`);
      if (report.disks.length >= 64) throw bad(line, 'more than 64 disks');
      report.disks.push({
        diskId,
        array: array.slice(0, 64),
        legs,
        action: action as ServerAgentReport['disks'][number]['action'],
        progressPercent: optionalNumber(percent, line),
        bitmapDirtyChunks: optionalNumber(dirty, line),
        mdEvents: optionalNumber(events, line),
      });
    }
    // Unknown keys are skipped: a newer agent may say more.
  }
  return report;
}

export class ServerLinks implements ServerLinkService {
  readonly #options: ServerLinksOptions;
  readonly #path: string;
  readonly #links: LinksFile;
  readonly #reports = new Map<string, ServerAgentReport>();
  readonly #commands = new Map<string, ServerCommand[]>();
  /** The recovery environment's last report per server, since its failback media were built. */
  readonly #failbacks = new Map<string, ServerFailbackReport>();
  readonly #reportIntervalSeconds: number;

  private constructor(options: ServerLinksOptions, path: string, links: LinksFile) {
    this.#options = options;
    this.#path = path;
    this.#links = links;
    this.#reportIntervalSeconds = options.reportIntervalSeconds ?? DEFAULT_REPORT_INTERVAL_SECONDS;
  }

  static async open(options: ServerLinksOptions): Promise<ServerLinks> {
    const path = join(options.dataDir, 'servers', 'links.json');
    await mkdir(join(options.dataDir, 'servers'), { recursive: true, mode: PRIVATE_DIR_MODE });
    const text = await readOptionalText(path);
    const saved = text === null ? {} : (JSON.parse(text) as Partial<LinksFile>);
    return new ServerLinks(options, path, {
      enrolled: saved.enrolled ?? [],
      forgotten: saved.forgotten ?? [],
      fenced: saved.fenced ?? {},
    });
  }

  /**
   * Why this machine's certificate is refused (its legs and reports), or
   * null when it is accepted. Asked by the NBD listener on every export lookup.
   */
  refusalOf(machineId: string): { status: 403; message: string } | null {
    const fenced = this.#links.fenced[machineId];
    if (fenced !== undefined) return { status: 403, message: mustStayOff(fenced) };
    if (this.#links.forgotten.includes(machineId)) {
      return { status: 403, message: `server ${machineId} was forgotten by this host: enrol it again` };
    }
    return null;
  }

  /** writeFileAtomic keeps one file's writes in call order; a failed one does not stop the next. */
  #save(): Promise<void> {
    return writeFileAtomic(this.#path, `${JSON.stringify(this.#links, null, 2)}\n`);
  }

  /**
   * POST /v1/enrol: redeems the token with the vault, makes sure the
   * server's legs are attached here, signs its CSR; answers the contract's
   * configuration lines followed by the certificate.
   */
  async enrol(token: string, csrPem: string): Promise<string> {
    // Checked before the token is spent: a broken agent should not burn it.
    checkCsrPem(csrPem);
    const enrolment = await this.#options.redeemEnrolment(token);
    const refused = this.#links.fenced[enrolment.machineId];
    if (refused !== undefined) {
      throw new HavenError('forbidden', mustStayOff(refused), {
        machineId: enrolment.machineId,
      });
    }
    for (const disk of enrolment.disks) {
      await this.#options.disks.attach({
        machineId: enrolment.machineId,
        diskId: disk.diskId,
        source: disk.device,
        sizeBytes: disk.sizeBytes,
        serverLeg: true,
      });
    }
    const certPem = await this.#options.ca.signClient(csrPem, enrolment.machineId);
    // A new enrolment the vault granted lifts an earlier forget.
    this.#links.forgotten = this.#links.forgotten.filter((id) => id !== enrolment.machineId);
    if (!this.#links.enrolled.includes(enrolment.machineId)) this.#links.enrolled.push(enrolment.machineId);
    await this.#save();
    this.#options.log?.(`server ${enrolment.name} (${enrolment.machineId}) enrolled`);
    const { endpoint } = this.#options;
    return [
      `machine ${enrolment.machineId}`,
      `name ${enrolment.name}`,
      `nbd ${endpoint.address} ${endpoint.nbdPort} ${endpoint.tlsHostname}`,
      `agent ${endpoint.address} ${endpoint.agentPort}`,
      `timeout ${enrolment.nbdTimeoutSeconds}`,
      `writebehind ${enrolment.writeBehind ?? 0}`,
      `report ${this.#reportIntervalSeconds}`,
      ...enrolment.disks.map(
        (d) =>
          `disk ${d.diskId} ${d.device} ${exportNameOf({ machineId: enrolment.machineId, diskId: d.diskId })} ${d.sizeBytes}`,
      ),
      '',
      certPem.trim(),
      '',
    ].join('\n');
  }

  /** POST /v1/report from the certificate naming `machineId`: keeps it, answers (and drops) the queued commands. */
  report(machineId: string, body: string): string {
    const refusal = this.refusalOf(machineId);
    if (refusal !== null) throw new HavenError('forbidden', refusal.message, { machineId });
    const report = parseServerReport(body, new Date().toISOString());
    this.#reports.set(machineId, report);
    // A whole, idle array: the host's leg may count as in sync (see MdLegTracker.confirm).
    for (const disk of report.disks) {
      if (
        disk.legs !== '[UU]' ||
        disk.action !== 'idle' ||
        disk.mdEvents === null ||
        disk.mdEvents === undefined
      )
        continue;
      const name = exportNameOf({ machineId, diskId: disk.diskId });
      this.#options.core.confirmServerLeg(name, BigInt(disk.mdEvents)).catch((error: unknown) => {
        this.#options.log?.(`server ${machineId}: leg ${name} not confirmed: ${(error as Error).message}`);
      });
    }
    if (report.failback) this.#failbacks.set(machineId, report.failback);
    const commands = this.#commands.get(machineId) ?? [];
    this.#commands.delete(machineId);
    return commands.map((c) => `${c}\n`).join('');
  }

  /** Queues a command for the server's next report (once). */
  queue(machineId: string, command: ServerCommand): void {
    const queued = this.#commands.get(machineId) ?? [];
    if (!queued.includes(command)) queued.push(command);
    this.#commands.set(machineId, queued);
  }

  async endpoint(): Promise<ServerEndpoint> {
    return this.#options.endpoint;
  }

  #legs(machineId: string): ServerLegState[] {
    return this.#options.core.list().flatMap((info) => {
      const { machineId: owner, diskId } = refOf(info.name);
      if (owner !== machineId || info.serverLeg === null) return [];
      const { md, syncedBytes, pointsAllowed, connected } = info.serverLeg;
      return [
        {
          diskId,
          sizeBytes: info.sizeBytes,
          connected,
          md,
          syncedBytes,
          pointsAllowed,
          lastWriteAt: this.#options.core.journalStatus(info.name).lastWriteAt,
        },
      ];
    });
  }

  /** Whether this host holds legs of the machine (for replication.status). */
  serves(machineId: string): boolean {
    return this.#legs(machineId).length > 0 || this.#links.enrolled.includes(machineId);
  }

  async status(params: { machineId: string }): Promise<ServerLinkSnapshot> {
    const legs = this.#legs(params.machineId);
    const agent = this.#reports.get(params.machineId) ?? null;
    const fenced = this.#links.fenced[params.machineId];
    const judged = serverLinkStateOf({
      enrolled: this.#links.enrolled.includes(params.machineId),
      legs,
      agent,
      nowMs: Date.now(),
      reportIntervalSeconds: this.#reportIntervalSeconds,
    });
    return {
      ...judged,
      ...(fenced === undefined
        ? {}
        : { problem: `fenced: failed over, the server must stay off (${fenced})` }),
      legs,
      agent,
      failback: this.#failbacks.get(params.machineId) ?? null,
    };
  }

  async shutdown(params: {
    machineId: string;
    timeoutMs: number;
  }): Promise<{ stopped: boolean; reason: string }> {
    const timeoutMs = Math.min(Math.max(0, Math.floor(Number(params.timeoutMs)) || 0), MAX_SHUTDOWN_WAIT_MS);
    const askedAtMs = Date.now();
    this.queue(params.machineId, 'shutdown');
    const deadline = askedAtMs + timeoutMs;
    const pollMs = Math.min(200, Math.max(10, Math.floor(timeoutMs / 20)));
    for (;;) {
      const report = this.#reports.get(params.machineId);
      // Whoever asked for it: a server already shutting down counts.
      const stoppedAt = report?.stopping ? report.receivedAt : null;
      const connected = this.#legs(params.machineId)
        .filter((leg) => leg.connected)
        .map((leg) => leg.diskId);
      if (stoppedAt !== null && connected.length === 0) {
        return {
          stopped: true,
          reason: `the server agent reported stopping at ${stoppedAt} and every leg disconnected`,
        };
      }
      if (Date.now() >= deadline) {
        const why =
          stoppedAt === null
            ? `the server agent did not report stopping within ${timeoutMs} ms (it takes the command with its next report, every ${this.#reportIntervalSeconds} s)`
            : `legs still connected after ${timeoutMs} ms: ${connected.join(', ')}`;
        return { stopped: false, reason: why };
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }

  async forget(params: { machineId: string }): Promise<void> {
    const { machineId } = params;
    if (!DISK_ID_PATTERN.test(machineId)) {
      throw new HavenError('bad_request', 'forget needs a machine id', { field: 'machineId' });
    }
    this.#reports.delete(machineId);
    this.#commands.delete(machineId);
    if (!this.#links.forgotten.includes(machineId)) this.#links.forgotten.push(machineId);
    this.#links.enrolled = this.#links.enrolled.filter((id) => id !== machineId);
    await this.#save();
    // Only its legs: the machine may live on here as a VM, on disks of its own.
    for (const disk of await this.#options.disks.list({ machineId })) {
      if (disk.stagingImage !== undefined)
        await this.#options.disks.detach({ machineId, diskId: disk.diskId });
    }
    // The staging images, their journals and any failback media: nothing reads them any more.
    await rm(join(this.#options.dataDir, 'servers', machineId), { recursive: true, force: true });
  }

  async fence(params: { machineId: string; reason: string }): Promise<void> {
    this.#links.fenced[params.machineId] = String(params.reason ?? '').slice(0, 200) || 'failed over';
    this.#commands.delete(params.machineId);
    await this.#save();
    // Refused from now on, and cut now: a server still writing must not reach its legs again.
    await this.#options.core.disconnectServer(params.machineId);
  }

  async unfence(params: { machineId: string }): Promise<void> {
    delete this.#links.fenced[params.machineId];
    await this.#save();
  }

  bmc(params: { access: BmcAccess; action: BmcAction }): Promise<{ power: BmcPower }> {
    return bmcCall(params);
  }

  async failbackMedia(params: ServerFailbackMediaRequest): Promise<ServerFailbackMedia> {
    const { machineId } = params;
    if (!DISK_ID_PATTERN.test(machineId) || !Array.isArray(params.disks)) {
      throw new HavenError('bad_request', 'failbackMedia needs a machine id and its disks', {
        field: 'disks',
      });
    }
    const dir = join(this.#options.dataDir, 'servers', machineId, 'failback');
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    const { endpoint } = this.#options;
    const build = this.#options.buildRecoveryEnvironment ?? buildRecoveryEnvironment;
    const env = await build(
      {
        export: {
          address: endpoint.address,
          port: endpoint.nbdPort,
          tlsHostname: endpoint.tlsHostname,
          caPem: endpoint.caCertPem,
        },
        identity: { machineId, stateDir: params.stateDir ?? AGENT_STATE_DIR },
        // Disk n of the agent's configuration is its /dev/md<n>.
        disks: params.disks.map((d, i) => ({
          device: d.device,
          array: `/dev/md${i}`,
          exportName: exportNameOf({ machineId, diskId: d.diskId }),
          ranges: d.ranges,
        })),
        ...(params.network ? { network: params.network } : {}),
        ...(this.#options.log ? { log: this.#options.log } : {}),
      },
      dir,
    );
    // A report from an earlier run of the environment must not pass for this one's.
    this.#reports.delete(machineId);
    this.#failbacks.delete(machineId);
    this.#options.log?.(`server ${machineId}: recovery environment for its failback in ${dir}`);
    return {
      dir,
      kernel: env.kernel,
      initramfs: env.initramfs,
      ipxeScript: env.ipxeScript,
      syslinuxConfig: env.syslinuxConfig,
      cmdline: env.cmdline,
      disks: params.disks.map((d, i) => ({ diskId: d.diskId, rangeBytes: env.disks[i]?.rangeBytes ?? 0 })),
      rangeBytes: env.rangeBytes,
    };
  }
}
