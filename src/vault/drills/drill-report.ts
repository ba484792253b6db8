import {
  countChecks,
  type DrillCheck,
  type DrillReport,
  type DrillRun,
  drillRunChecks,
  withoutScriptOutput,
} from '../../domain/drill.ts';
import { formatDuration } from '../../text/human-units.ts';

/**
 * The report of one drill an auditor reads. Script output (an application
 * check's evidence) only when `scriptOutput` (operators and admins): viewers
 * see every result and summary without it.
 */
export function drillReport(
  run: DrillRun,
  options: { scheduleName: string | null; scriptOutput: boolean; generatedAt: string },
): DrillReport {
  const drill = options.scriptOutput ? run : withoutScriptOutput(run);
  const start = run.startedAt ?? run.createdAt;
  return {
    drill,
    scheduleName: options.scheduleName,
    startedBy:
      options.scheduleName !== null
        ? `schedule '${options.scheduleName}'`
        : run.scheduleId !== null
          ? `schedule ${run.scheduleId.slice(0, 8)} (since deleted)`
          : run.createdBy,
    durationSeconds: run.endedAt === null ? null : (Date.parse(run.endedAt) - Date.parse(start)) / 1000,
    checks: countChecks(drillRunChecks(run)),
    scriptOutputIncluded: options.scriptOutput,
    generatedAt: options.generatedAt,
  };
}

const RESULT_WORDS: Record<DrillCheck['result'], string> = {
  passed: 'PASSED',
  failed: 'FAILED',
  'not-checked': 'NOT CHECKED',
};

const seconds = (s: number | null) => (s === null ? '—' : formatDuration(s));
const targetWord = (report: DrillReport) =>
  report.drill.target.kind === 'machine' ? 'Machine' : 'Recovery plan';

/** The report's facts as label and value, in the order both renderings show them. */
function facts(report: DrillReport): [string, string][] {
  const { drill } = report;
  return [
    [targetWord(report), drill.targetName],
    ['Drill', drill.id],
    ['Result', drill.state + (drill.reason ? `: ${drill.reason}` : '')],
    ['Started by', report.startedBy],
    ['Started', drill.startedAt ?? drill.createdAt],
    ['Ended', drill.endedAt ?? 'still running'],
    ['Duration', seconds(report.durationSeconds)],
    ['RTO', seconds(drill.rtoSeconds)],
    [
      'Checks',
      `${report.checks.passed} passed, ${report.checks.failed} failed, ${report.checks.notChecked} not checked`,
    ],
    ['Job', drill.jobId ?? '—'],
  ];
}

function pointWords(m: DrillRun['machines'][number]): string {
  return m.point === null ? 'no point chosen' : `${m.point.type} point of ${m.point.time} (${m.point.id})`;
}

function evidenceNote(check: DrillCheck, report: DrillReport): string | null {
  if (check.evidence !== null) return null;
  return check.evidenceIsScriptOutput && !report.scriptOutputIncluded
    ? 'script output is shown to operators and admins only'
    : 'no evidence recorded';
}

/** A fence longer than any run of backticks in the text, so evidence cannot end its block early. */
function fenceFor(text: string): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  return '`'.repeat(Math.max(3, longest + 1));
}

/** Markdown table cells and inline text: no pipes, line breaks or markup from what guests and scripts print. */
function mdInline(text: string): string {
  return text.replace(/[\\`*_{}[\]()<>#|!~]/g, '\\$&').replace(/\r?\n/g, ' ');
}

/** The heading of a run's own checks (a plan drill's order and actions). */
const RUN_CHECKS_TITLE = "The plan's order and actions";

function checkMarkdown(check: DrillCheck, report: DrillReport): string[] {
  const lines = [
    '',
    `### ${RESULT_WORDS[check.result]}: ${mdInline(check.name)}`,
    '',
    `${mdInline(check.summary)} (${formatDuration(check.durationMs / 1000)}, from ${check.startedAt})`,
    '',
  ];
  const note = evidenceNote(check, report);
  if (note !== null) lines.push(`_Evidence: ${note}._`);
  else {
    const fence = fenceFor(check.evidence!);
    lines.push(fence, check.evidence!, fence);
  }
  return lines;
}

export function drillReportMarkdown(report: DrillReport): string {
  const { drill } = report;
  const lines = [`# Drill report: ${mdInline(drill.targetName)}`, '', '| | |', '|---|---|'];
  for (const [label, value] of facts(report)) lines.push(`| ${label} | ${mdInline(value)} |`);
  for (const m of drill.machines) {
    lines.push(
      '',
      `## ${mdInline(m.machineName)}`,
      '',
      `- Point: ${mdInline(pointWords(m))}`,
      `- RTO: ${seconds(m.rtoSeconds)}`,
      `- Cleaned up: ${m.cleanedUp ? 'yes (drill machine and overlay removed, verified at the host)' : 'no'}`,
    );
    for (const check of m.checks) lines.push(...checkMarkdown(check, report));
  }
  if (drill.checks.length > 0) {
    lines.push('', `## ${RUN_CHECKS_TITLE}`);
    for (const check of drill.checks) lines.push(...checkMarkdown(check, report));
  }
  lines.push('', `_Generated ${report.generatedAt} by Haven._`, '');
  return lines.join('\n');
}

function html(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function checkHtml(check: DrillCheck, report: DrillReport): string[] {
  const note = evidenceNote(check, report);
  return [
    `<h3><span class="${check.result}">${RESULT_WORDS[check.result]}</span>: ${html(check.name)}</h3>`,
    `<p>${html(check.summary)} (${formatDuration(check.durationMs / 1000)}, from ${html(check.startedAt)})</p>`,
    note === null ? `<pre>${html(check.evidence!)}</pre>` : `<p><em>Evidence: ${note}.</em></p>`,
  ];
}

/** A page that stands alone (no scripts, no outside resources), to print or archive. */
export function drillReportHtml(report: DrillReport): string {
  const { drill } = report;
  const out = [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>Drill report: ${html(drill.targetName)}</title>`,
    '<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}' +
      'th{text-align:left;padding-right:1rem}pre{background:#f4f4f4;padding:.5rem;overflow-x:auto;white-space:pre-wrap}' +
      '.passed{color:#1a7f37}.failed{color:#cf222e}.not-checked{color:#9a6700}</style>',
    '</head><body>',
    `<h1>Drill report: ${html(drill.targetName)}</h1>`,
    '<table>',
    ...facts(report).map(([label, value]) => `<tr><th>${label}</th><td>${html(value)}</td></tr>`),
    '</table>',
  ];
  for (const m of drill.machines) {
    out.push(
      `<h2>${html(m.machineName)}</h2>`,
      '<ul>',
      `<li>Point: ${html(pointWords(m))}</li>`,
      `<li>RTO: ${seconds(m.rtoSeconds)}</li>`,
      `<li>Cleaned up: ${m.cleanedUp ? 'yes (drill machine and overlay removed, verified at the host)' : 'no'}</li>`,
      '</ul>',
    );
    for (const check of m.checks) out.push(...checkHtml(check, report));
  }
  if (drill.checks.length > 0) {
    out.push(`<h2>${html(RUN_CHECKS_TITLE)}</h2>`);
    for (const check of drill.checks) out.push(...checkHtml(check, report));
  }
  out.push(`<p><em>Generated ${html(report.generatedAt)} by Haven.</em></p>`, '</body></html>', '');
  return out.join('\n');
}
