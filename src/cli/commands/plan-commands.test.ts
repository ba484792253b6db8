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
  fixture = await startPlanTestVault(['db-1', 'web-1']);
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
});
