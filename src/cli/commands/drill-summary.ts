import type { DrillCheck, DrillRun } from '../../domain/drill.ts';
import { ago, formatDuration } from '../../text/human-units.ts';
import { type Output, printJson, printRecord } from '../output.ts';
import { shortId } from '../resolve-ref.ts';
import { localTime } from './machine-summary.ts';

const RESULT = { passed: 'passed', failed: 'FAILED', 'not-checked': 'not checked' } as const;

/** A check in words: "boot: passed — up: console output 12.0 s after start (12 s)". */
export function checkWords(check: DrillCheck): string {
  return `${check.name}: ${RESULT[check.result]} — ${check.summary} (${formatDuration(check.durationMs / 1000)})`;
}

/** `haven drills show`: the drill, then each machine's point and checks in words. */
export function printDrill(out: Output, drill: DrillRun, scheduleName: string | null): number {
  if (out.json) {
    printJson(out, drill);
    return 0;
  }
  const start = drill.startedAt ?? drill.createdAt;
  printRecord(out, [
    [drill.target.kind === 'machine' ? 'Machine' : 'Plan', drill.targetName],
    ['Result', `${drill.state}${drill.reason ? `: ${drill.reason}` : ''}`],
    ['Started by', scheduleName ? `schedule '${scheduleName}'` : drill.createdBy],
    ['Started', `${localTime(start)} (${ago(start)})`],
    [
      'Duration',
      drill.endedAt ? formatDuration((Date.parse(drill.endedAt) - Date.parse(start)) / 1000) : 'running',
    ],
    ['RTO', drill.rtoSeconds === null ? null : formatDuration(drill.rtoSeconds)],
    ['Job', drill.jobId ? shortId(drill.jobId) : null],
    ['Id', drill.id],
  ]);
  for (const m of drill.machines) {
    const point = m.point ? `${m.point.type} point of ${localTime(m.point.time)}` : 'no point chosen';
    out.write(
      `\n${m.machineName}: ${point}${m.rtoSeconds === null ? '' : `, up after ${formatDuration(m.rtoSeconds)}`}, ${m.cleanedUp ? 'cleaned up' : 'NOT cleaned up yet'}\n`,
    );
    for (const check of m.checks) out.write(`  ${checkWords(check)}\n`);
    if (m.checks.length === 0) out.write(drill.endedAt ? '  (no checks ran)\n' : '  (no checks yet)\n');
  }
  if (drill.checks.length > 0) {
    out.write("\nThe plan's order and actions:\n");
    for (const check of drill.checks) out.write(`  ${checkWords(check)}\n`);
  }
  return 0;
}
