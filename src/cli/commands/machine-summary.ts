import type { TargetProof } from '../../domain/drill.ts';
import { allowedOperations } from '../../domain/index.ts';
import type { Job, Machine, RunningCopy } from '../../domain/model.ts';
import { ago, formatBytes, formatDuration } from '../../text/human-units.ts';
import { type Output, printJson, printRecord } from '../output.ts';
import { type Names, shortId } from '../resolve-ref.ts';

/** A moment as people read it: local date and time to the second. */
export function localTime(iso: string): string {
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** How long from one moment to another: '2 min 5 s'. */
export function between(fromIso: string, toIso: string): string {
  return formatDuration((Date.parse(toIso) - Date.parse(fromIso)) / 1000);
}

/** What a job acts on, by name: 'machine web-01', 'plan web-tier', 'vault'. */
export function jobTarget(job: Job, names: Names): string {
  if (job.targetType === 'vault' || job.targetId === null) return job.targetType;
  const collection = ({ machine: 'machines', plan: 'plans', host: 'hosts' } as const)[job.targetType];
  return `${job.targetType} ${names(collection, job.targetId)}`;
}

function copy(c: RunningCopy, names: Names): string {
  return `${c.vmName} on ${names('hosts', c.hostId)}, from the point of ${localTime(c.pointTime)} (${ago(c.pointTime)})`;
}

/** `haven machines show`: a summary in words, not the stored record. */
export function printMachine(out: Output, machine: Machine, names: Names, proof?: TargetProof): number {
  if (out.json) {
    printJson(out, machine);
    return 0;
  }
  const r = machine.replication;
  const settings = machine.recoverySettings;
  const test = machine.runtime.test;
  printRecord(out, [
    ['Machine', machine.name],
    ['State', `${machine.state}, health ${machine.health}`],
    ['Runs on', names('hosts', machine.activeHostId)],
    ['Protected to', machine.recoveryHostId ? names('hosts', machine.recoveryHostId) : 'not protected'],
    ['Policy', machine.policyId ? names('policies', machine.policyId) : null],
    ['Consistency group', machine.groupId],
    [
      'Replication',
      r
        ? [
            r.state,
            r.rpoSeconds === null ? null : `RPO ${formatDuration(r.rpoSeconds)}`,
            `${formatBytes(r.pendingBytes)} pending`,
            `${formatBytes(r.throughputBytesPerSec)}/s`,
            r.copy ? `copy ${formatBytes(r.copy.doneBytes)} of ${formatBytes(r.copy.totalBytes)}` : null,
            r.lastError ? `last error: ${r.lastError}` : null,
          ]
            .filter((x) => x !== null)
            .join(', ')
        : 'not replicating',
    ],
    ...(proof ? [['Proven', proofWords(proof)] as const] : []),
    ...(test ? [['Drill', `${copy(test, names)}, network ${test.network}`] as const] : []),
    ...(machine.runtime.failover ? [['Failed over', copy(machine.runtime.failover, names)] as const] : []),
    ['Disks', machine.disks.map((d) => `${d.id} ${formatBytes(d.sizeBytes)} ${d.source}`).join('; ')],
    [
      'Recovers as',
      `${settings.targetName}: ${settings.cpus} CPU${settings.cpus === 1 ? '' : 's'}, ${formatBytes(settings.memoryMiB * 2 ** 20)}`,
    ],
    [
      'NICs',
      settings.nics
        .map(
          (n) =>
            `${n.network}${n.recoveryNetwork ? `→${n.recoveryNetwork}` : ''} ${n.ip.mode === 'static' ? `${n.ip.address}/${n.ip.prefixLength}` : 'dhcp'}${n.mac ? ` ${n.mac}` : ''}`,
        )
        .join('; '),
    ],
    ['Current job', machine.currentJobId ? shortId(machine.currentJobId) : null],
    ['Allowed', allowedOperations(machine.state).join(', ')],
    ['Created', ago(machine.createdAt)],
    ['Id', machine.id],
  ]);
  return 0;
}

/** A machine's or plan's proof in one line: its last proven point, and a newer drill that did not pass. */
export function proofWords(proof: TargetProof): string {
  const { lastProven: p, lastDrill: last } = proof;
  const proven = p
    ? [
        p.points.length === 1
          ? `${p.points[0]!.point.type} point of ${localTime(p.points[0]!.point.time)}`
          : `${p.points.length} machines' points`,
        `proven ${ago(p.provenAt)}`,
        p.rtoSeconds === null ? null : `RTO ${formatDuration(p.rtoSeconds)}`,
        `${p.checks.passed} check${p.checks.passed === 1 ? '' : 's'} passed${p.checks.notChecked ? `, ${p.checks.notChecked} not checked` : ''}`,
        `drill ${shortId(p.drillId)}`,
      ]
        .filter((x) => x !== null)
        .join(', ')
    : 'never: no drill has passed';
  if (last && last.id !== p?.drillId && last.state !== 'passed')
    return `${proven}; last drill ${shortId(last.id)} ${last.state}${last.reason ? `: ${last.reason}` : ''}`;
  return proven;
}
