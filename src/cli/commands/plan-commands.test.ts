import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Job } from '../../domain/model.ts';
import { runHaven } from '../../testing/child-process.ts';
import { type PlanTestVault, startPlanTestVault } from '../../vault/plans/plan-test-vault.fixture.ts';

let fixture: PlanTestVault;
const conn = () => ['--url', fixture.vault.url, '--token', fixture.token];

before(async () => {
  fixture = await startPlanTestVault(['db-1', 'web-1', 'solo-1']);
});
after(() => fixture.stop());

describe('haven plans', () => {
  it('creates from YAML, shows, exports, runs to the manual action, resumes to success', async () => {
    const file = join(fixture.dataDir, 'app.yaml');
    await writeFile(
      file,
      [
        'name: app',
        'groups:',
        '  - name: db',
        '    machines: [db-1]',
        '    after:',
        '      - kind: manual',
        '        name: check',
        '        text: Check the database answers',
        '  - name: web',
        '    machines: [web-1]',
        '',
      ].join('\n'),
    );
    const created = await runHaven(['plans', 'create', '--file', file, ...conn()]);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /plan 'app' created/);

    const shown = await runHaven(['plans', 'show', 'app', ...conn()]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /group 1 'db': db-1\n {2}after: manual 'check'\ngroup 2 'web': web-1/);
    assert.match(shown.stdout, /no history yet/);

    const out = join(fixture.dataDir, 'out.yaml');
    const exported = await runHaven(['plans', 'export', 'app', '--output', out, ...conn()]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(
      await readFile(out, 'utf8'),
      /- kind: manual\n\s+name: check\n\s+text: Check the database answers/,
    );
    const again = await runHaven(['plans', 'import', '--file', out, ...conn()]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already exists; import with replace/);
    assert.equal((await runHaven(['plans', 'import', '--file', out, '--replace', ...conn()])).code, 0);

    const run = await runHaven(['plans', 'run', 'app', 'test-failover', '--point', 'latest', ...conn()]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /waiting: Manual action 'check' .*Check the database answers/);
    const jobId = run.stdout.match(/haven plans resume (\S+)/)![1]!;
    const resumed = await runHaven(['plans', 'resume', jobId, ...conn()]);
    assert.equal(resumed.code, 0, resumed.stderr + resumed.stdout);
    assert.match(resumed.stdout, /plan job .* succeeded/);
    const job = (await fixture.call<Job>('GET', `/jobs/${jobId}`)).body;
    assert.equal(job.state, 'succeeded');

    const list = await runHaven(['plans', 'list', ...conn()]);
    assert.match(list.stdout, /app\s+2\s+2/);
  });

  it('runs with --point as machines points prints it (disk0@42) or the start of a point id', async () => {
    const solo = fixture.machines['solo-1']!;
    const point = (seq: number) => ({
      id: `${solo.id}/disk0@${seq}`,
      machineId: solo.id,
      time: new Date(Date.now() - (100 - seq) * 1000).toISOString(),
      sequence: seq,
      type: 'crash-consistent' as const,
      groupPointId: null,
      processed: true,
      sizeBytes: 0,
    });
    for (const seq of [41, 42, 57]) await fixture.vault.context.store.recoveryPoints.add(point(seq));
    const plan = join(fixture.dataDir, 'solo.yaml');
    await writeFile(
      plan,
      ['name: solo', 'groups:', '  - name: only', '    machines: [solo-1]', ''].join('\n'),
    );
    assert.equal((await runHaven(['plans', 'create', '--file', plan, ...conn()])).code, 0);

    const chosen = async (text: string) => {
      const run = await runHaven(['plans', 'run', 'solo', 'test-failover', '--point', text, ...conn()]);
      assert.equal(run.code, 0, run.stderr);
      const jobId = run.stdout.match(/plan job (\S+)/)![1]!;
      const { body } = await fixture.call<{ jobs: Job[] }>('GET', '/jobs');
      const job = body.jobs.find((j) => j.id.startsWith(jobId))!;
      const cleanup = await runHaven(['plans', 'run', 'solo', 'cleanup-test-failover', ...conn()]);
      assert.equal(cleanup.code, 0, cleanup.stderr);
      return (job.input as { options: { recoveryPoint: unknown } }).options.recoveryPoint;
    };
    assert.deepEqual(await chosen('disk0@42'), { option: 'custom', pointId: `${solo.id}/disk0@42` });
    assert.deepEqual(await chosen('disk0@5'), { option: 'custom', pointId: `${solo.id}/disk0@57` });
    const ambiguous = await runHaven([
      'plans',
      'run',
      'solo',
      'test-failover',
      '--point',
      'disk0@4',
      ...conn(),
    ]);
    assert.notEqual(ambiguous.code, 0);
    assert.match(ambiguous.stderr, /disk0@41.*disk0@42|disk0@42.*disk0@41/s);
  });
});
