import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DrillCheck, DrillRun } from '../../domain/drill.ts';
import { drillReport, drillReportHtml, drillReportMarkdown } from './drill-report.ts';

const check = (over: Partial<DrillCheck>): DrillCheck => ({
  kind: 'boot',
  name: 'boot',
  result: 'passed',
  summary: 'up',
  evidence: null,
  evidenceIsScriptOutput: false,
  startedAt: '2026-12-05T02:00:05.000Z',
  durationMs: 1000,
  ...over,
});

const run: DrillRun = {
  id: 'd1e2f3a4-0000-4000-8000-000000000000',
  scheduleId: 'aaaabbbb-0000-4000-8000-000000000000',
  target: { kind: 'machine', machineId: 'm1' },
  targetName: 'web|01',
  jobId: null,
  state: 'failed',
  reason: 'filesystem vda1 (ext4): | corrupt *inode*',
  machines: [
    {
      machineId: 'm1',
      machineName: 'web|01',
      point: { id: 'm1@3', time: '2026-12-05T01:59:00.000Z', type: 'crash-consistent' },
      copy: null,
      rtoSeconds: null,
      checks: [
        check({ evidence: 'login:\n```\n# not a heading\n````' }),
        check({
          kind: 'filesystems',
          name: 'filesystem vda1 (ext4)',
          result: 'failed',
          summary: 'e2fsck: Inode table | damaged',
          evidence: '</pre><script>alert("x")</script>&',
        }),
        check({ kind: 'filesystems', name: 'filesystem vda2 (LVM2_member)', result: 'not-checked' }),
        check({ kind: 'application', name: 'script s', evidence: 'secret', evidenceIsScriptOutput: true }),
      ],
      cleanedUp: true,
    },
  ],
  rtoSeconds: null,
  checks: [],
  createdBy: 'scheduler',
  createdAt: '2026-12-05T02:00:00.000Z',
  startedAt: '2026-12-05T02:00:00.000Z',
  endedAt: '2026-12-05T02:01:30.000Z',
};

const options = { scheduleName: null, scriptOutput: true, generatedAt: '2026-12-05T09:00:00.000Z' };

test('the report counts checks, says who started it and how long it took', () => {
  const report = drillReport(run, options);
  assert.deepEqual(report.checks, { passed: 2, failed: 1, notChecked: 1 });
  assert.equal(report.durationSeconds, 90);
  assert.equal(report.startedBy, 'schedule aaaabbbb (since deleted)');
  assert.equal(drillReport(run, { ...options, scheduleName: 'nightly' }).startedBy, "schedule 'nightly'");
  const viewer = drillReport(run, { ...options, scriptOutput: false });
  assert.equal(viewer.drill.machines[0]!.checks[3]!.evidence, null);
  assert.equal(viewer.drill.machines[0]!.checks[0]!.evidence, run.machines[0]!.checks[0]!.evidence);
});

test('Markdown: evidence cannot close its block, names and summaries cannot break the table or add markup', () => {
  const md = drillReportMarkdown(drillReport(run, options));
  // A fence longer than the longest backtick run in the evidence.
  assert.match(md, /\n`{5}\nlogin:\n```\n# not a heading\n````\n`{5}\n/);
  assert.match(md, /\| Machine \| web\\\|01 \|/);
  assert.match(md, /\| Result \| failed: filesystem vda1 \\\(ext4\\\): \\\| corrupt \\\*inode\\\* \|/);
  assert.match(md, /### FAILED: filesystem vda1 \\\(ext4\\\)/);
  assert.match(md, /### NOT CHECKED: filesystem vda2 \\\(LVM2\\_member\\\)/);
  assert.match(md, /Cleaned up: yes/);
  assert.doesNotMatch(drillReportMarkdown(drillReport(run, { ...options, scriptOutput: false })), /secret/);
});

test('HTML: everything from guests and scripts is escaped', () => {
  const page = drillReportHtml(drillReport(run, options));
  assert.doesNotMatch(page, /<script>/);
  assert.match(page, /&lt;\/pre&gt;&lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt;&amp;/);
  assert.match(page, /<title>Drill report: web\|01<\/title>/);
  assert.match(page, /<span class="not-checked">NOT CHECKED<\/span>/);
  const viewer = drillReportHtml(drillReport(run, { ...options, scriptOutput: false }));
  assert.doesNotMatch(viewer, /secret/);
  assert.match(viewer, /script output is shown to operators and admins only/);
});
