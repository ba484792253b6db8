import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { Locator } from 'playwright-core';
import type { Host, Job, Machine, Policy, RecoveryPoint } from '../domain/model.ts';
import type { PlanDocument } from '../domain/recovery-plan-validation.ts';
import {
  buildPortal,
  type PortalFixture,
  screenshots,
  startPortalFixture,
  watchedPage,
} from '../testing/portal-fixture.ts';
import { until } from '../testing/until.ts';

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-/;

/** Chooses a machine for the editor's group `group` with the mouse: search, then click its match. */
async function pickMachine(editor: Locator, group: number, name: string): Promise<void> {
  const at = editor.locator(`[data-group-index="${group}"]`);
  await at.getByRole('combobox').fill(name);
  await at.locator(`[role="option"][data-machine="${name}"]`).click();
  await at.locator(`.picked-machine[data-machine="${name}"]`).waitFor();
}

/** A test that provokes refusals on purpose sees the browser log them, and nothing else. */
function onlyRefusals(errors: string[]): void {
  const other = errors.filter((e) => !/Failed to load resource: .* status of (400|409|422) /.test(e));
  assert.deepEqual(other, []);
  assert.ok(errors.length > 0, 'the refusals were logged (the test provoked them)');
}

/**
 * Recovery plans, consistency groups and policies in Chromium against a real
 * `haven up`: its demo machine (a small guest under QEMU that fails over in
 * seconds) is protected first, so plan runs and group points are real.
 */
describe('portal pages: plans, consistency groups, policies', { timeout: 300_000 }, () => {
  let f: PortalFixture;
  let demo: Machine;
  let viewerToken: string;
  let operatorToken: string;
  let planId: string;
  const consoleErrors: string[] = [];

  before(async () => {
    await buildPortal();
    f = await startPortalFixture();
    demo = (await f.api<{ machines: Machine[] }>('GET', '/machines')).body.machines.find(
      (m) => m.name === 'demo-01',
    )!;
    assert.ok(demo, 'haven up offers demo-01');
    const enable = await f.api<Job>('POST', `/machines/${demo.id}/enable-replication`, {
      recoveryHostId: 'recovery',
      policyId: 'default',
    });
    assert.equal(enable.status, 202, JSON.stringify(enable.body));
    await until(
      'demo-01 to be protected',
      async () => {
        const job = (await f.api<Job>('GET', `/jobs/${enable.body.id}`)).body;
        assert.notEqual(job.state, 'failed', JSON.stringify(job.error));
        return job.state === 'succeeded';
      },
      { timeoutMs: 120_000 },
    );
    viewerToken = (await f.api<{ token: string }>('POST', '/tokens', { name: 'auditor', role: 'viewer' }))
      .body.token;
    operatorToken = (await f.api<{ token: string }>('POST', '/tokens', { name: 'ops', role: 'operator' }))
      .body.token;
  });
  after(async () => {
    await f?.stop();
  });

  test('policies: an admin creates one (refusals at their fields) and edits it; built-in ones are read-only', async () => {
    const refusals: string[] = [];
    const page = await watchedPage(f, f.adminToken, refusals);
    await page.goto(`${f.url}/policies`);
    const builtIn = page.locator('tr[data-policy="automatic-failback"]');
    await builtIn.getByText('read-only').waitFor();
    assert.equal(await builtIn.getByRole('button').count(), 0);

    await page.getByRole('button', { name: 'New policy' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Name').fill('gold');
    await dialog.getByLabel(/RPO threshold/).fill('600');
    await dialog.getByLabel(/Retention/).fill('300');
    await dialog.getByRole('button', { name: 'Create policy' }).click();
    // The vault's refusal sits at the field it names.
    await dialog
      .locator('[data-field="retentionSeconds"]')
      .getByText(/shorter than the RPO threshold/)
      .waitFor();
    assert.equal(await dialog.getByLabel(/Retention/).getAttribute('aria-invalid'), 'true');
    await screenshots(f, page, 'plans-policy-problem');
    await dialog.getByLabel(/Retention/).fill('7200');
    await dialog.getByRole('button', { name: 'Create policy' }).click();
    const row = page.locator('tr[data-policy="gold"]');
    await row.waitFor();
    assert.deepEqual((await row.locator('th, td').allInnerTexts()).map((t) => t.trim()).slice(0, 5), [
      'gold',
      '10 min',
      '2 h',
      '1 h',
      '0',
    ]);

    await row.getByRole('button', { name: 'Edit gold…' }).click();
    await dialog.getByLabel(/App-consistent/).fill('0');
    await dialog.getByRole('button', { name: 'Save policy' }).click();
    await row.locator('td', { hasText: 'never' }).waitFor();
    const stored = (await f.api<Policy>('GET', '/policies/gold')).body;
    assert.equal(stored.appConsistentFrequencySeconds, 0);
    await screenshots(f, page, 'plans-policies');

    // Deleting asks in the portal's own dialog (a window.confirm would block the test and look foreign).
    await row.getByRole('button', { name: 'Delete gold' }).click();
    await dialog.getByText(/Delete policy gold\?/).waitFor();
    await screenshots(f, page, 'plans-policy-delete');
    await dialog.getByRole('button', { name: 'Delete policy' }).click();
    await row.waitFor({ state: 'detached' });
    assert.equal((await f.api('GET', '/policies/gold')).status, 404);
    await page.close();
    onlyRefusals(refusals);
  });

  test('consistency groups: create one, see its members, recovery host and last group point, take a point', async () => {
    const refusals: string[] = [];
    const page = await watchedPage(f, operatorToken, refusals);
    await page.goto(`${f.url}/groups`);
    await page.getByText('No consistency groups yet.').waitFor();
    await page.getByRole('button', { name: 'New group' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Group name').fill('app');
    await dialog.getByRole('button', { name: 'Create group' }).click();
    await dialog.locator('[data-field="machineIds"]').waitFor();
    await dialog.getByLabel('demo-01').check();
    await dialog.getByRole('button', { name: 'Create group' }).click();
    await page.getByRole('heading', { name: 'Group app' }).waitFor();
    await page.locator('tr[data-member="demo-01"]').getByRole('link', { name: 'demo-01' }).waitFor();
    await page.locator('.facts').getByRole('link', { name: 'recovery' }).waitFor();

    await page.getByRole('button', { name: 'Take a group point now' }).click();
    await page.getByText('Group point taken.').waitFor({ timeout: 30_000 });
    await page
      .getByTestId('last-group-point')
      .getByText(/ago \(/)
      .waitFor({ timeout: 30_000 });
    const points = (
      await f.api<{ recoveryPoints: RecoveryPoint[] }>('GET', `/machines/${demo.id}/recovery-points`)
    ).body.recoveryPoints;
    assert.ok(points.some((p) => p.groupPointId !== null));
    assert.doesNotMatch((await page.locator('main').textContent()) ?? '', UUID);
    await screenshots(f, page, 'plans-group');

    await page.getByRole('link', { name: 'Consistency groups' }).click();
    const row = page.locator('tr[data-group="app"]');
    await row.getByRole('link', { name: 'recovery' }).waitFor();
    assert.equal((await row.locator('td').first().textContent())?.trim(), 'demo-01');
    await screenshots(f, page, 'plans-groups');

    // Removing the last member ends the group; the list says so.
    await row.getByRole('link', { name: 'app' }).click();
    await page.getByRole('button', { name: 'Remove demo-01' }).click();
    await page.getByText('No consistency groups yet.').waitFor();
    assert.equal((await f.api<Machine>('GET', `/machines/${demo.id}`)).body.groupId, null);
    assert.equal((await f.api('POST', '/groups', { name: 'app', machineIds: ['demo-01'] })).status, 201);
    await page.close();
    onlyRefusals(refusals);
  });

  test('plans: an operator writes one (refusals at their fields), runs a test failover that stops at a manual action, resumes it, cleans up', async () => {
    const refusals: string[] = [];
    const page = await watchedPage(f, operatorToken, refusals);
    await page.goto(`${f.url}/plans`);
    await page.getByText('No recovery plans yet.').waitFor();
    await page.getByRole('button', { name: 'New plan' }).click();
    const editor = page.getByTestId('plan-editor');
    await editor.getByLabel('Group name').fill('database');
    await pickMachine(editor, 0, 'demo-01');
    await editor.getByRole('button', { name: 'Add action before' }).click();
    await editor.getByRole('button', { name: 'Create plan' }).click();
    // Every problem the vault names, beside its field.
    await editor.locator('[data-field="name"]').getByText('The plan needs a name').waitFor();
    await editor.locator('[data-field="groups.0.before.0.name"]').waitFor();
    await screenshots(f, page, 'plans-editor-problems');

    await editor.getByLabel('Plan name').fill('billing');
    await editor.getByLabel('Action name').fill('check-dns');
    await editor.getByLabel('Instructions').fill('Confirm the DNS record points at the recovery site');
    await editor.getByRole('button', { name: 'Create plan' }).click();
    await page.getByTestId('plan-name').getByText('billing').waitFor();
    planId = decodeURIComponent(new URL(page.url()).pathname.split('/')[2]!);
    const group = page.locator('[data-group="database"]');
    await group.getByRole('link', { name: 'demo-01' }).waitFor();
    await group
      .locator('[data-action="check-dns"]')
      .getByText(/Confirm the DNS record/)
      .waitFor();
    await page
      .getByTestId('rto')
      .getByText(/not measured yet/)
      .waitFor();
    // Only what demo-01's state allows is offered; the rest say why not.
    const operations = page.getByTestId('plan-operations');
    assert.deepEqual(await operations.getByRole('button').allInnerTexts(), [
      'Test failover…',
      'Failover…',
      'Planned failover…',
    ]);
    await page
      .getByTestId('operations-not-offered')
      .getByText(
        'Clean up test failover, Commit, Reprotect, Failback, Complete failover: demo-01 is protected',
      )
      .waitFor();
    await screenshots(f, page, 'plans-plan');

    await page.getByRole('button', { name: 'Test failover…', exact: true }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel(/Latest processed/).check();
    await dialog.getByRole('button', { name: 'Test failover', exact: true }).click();
    const active = page.getByTestId('active-job');
    await active.locator('[data-testid="manual-action"]').waitFor({ timeout: 30_000 });
    await active.getByText(/Confirm the DNS record/).waitFor();
    const jobLink = active.getByRole('link', { name: 'Test failover' });
    const jobId = (await jobLink.getAttribute('href'))!.split('/').pop()!;
    assert.equal((await f.api<Job>('GET', `/jobs/${jobId}`)).body.state, 'waiting');
    assert.equal(await page.getByRole('button', { name: 'Test failover…', exact: true }).isDisabled(), true);
    await screenshots(f, page, 'plans-plan-waiting');

    await active.getByRole('button', { name: 'Resume' }).click();
    await until('the plan job to move past the manual action', async () => {
      const job = (await f.api<Job>('GET', `/jobs/${jobId}`)).body;
      return job.state !== 'waiting' ? job : undefined;
    });
    const done = await until(
      'the plan test failover to end',
      async () => {
        const job = (await f.api<Job>('GET', `/jobs/${jobId}`)).body;
        return ['succeeded', 'failed', 'cancelled'].includes(job.state) ? job : undefined;
      },
      { timeoutMs: 180_000 },
    );
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    await active.waitFor({ state: 'detached', timeout: 10_000 });
    await page.getByTestId('plan-runs').getByRole('link', { name: 'Test failover' }).waitFor();
    await page
      .getByTestId('rto')
      .getByText(/^about /)
      .waitFor();

    // The test copy runs: cleaning it up is offered, a second test failover is not.
    assert.deepEqual(await operations.getByRole('button').allInnerTexts(), ['Clean up test failover…']);
    await page.getByRole('button', { name: 'Clean up test failover…' }).click();
    await dialog.getByLabel('Notes').fill('portal plan drill');
    await dialog.getByRole('button', { name: 'Clean up test failover', exact: true }).click();
    await until(
      'demo-01 back to protected',
      async () => {
        const m = (await f.api<Machine>('GET', `/machines/${demo.id}`)).body;
        return m.state === 'protected' ? m : undefined;
      },
      { timeoutMs: 120_000 },
    );
    await page.getByTestId('plan-runs').getByRole('link', { name: 'Clean up test failover' }).waitFor();
    await page.close();
    onlyRefusals(refusals);
  });

  test('plans: an operator drives every other plan operation from the plan page, around the whole cycle and back to protected', async () => {
    const refusals: string[] = [];
    const page = await watchedPage(f, operatorToken, refusals);
    await page.goto(`${f.url}/plans/${planId}`);
    await page.getByTestId('plan-name').getByText('billing').waitFor();
    const operations = page.getByTestId('plan-operations');
    const notOffered = page.getByTestId('operations-not-offered');
    const dialog = page.getByRole('dialog');
    const ALL = [
      'Test failover',
      'Clean up test failover',
      'Failover',
      'Planned failover',
      'Commit',
      'Reprotect',
      'Failback',
      'Complete failover',
    ];

    /** The buttons offered are the ones demo-01's state allows; the rest say that state. */
    const offers = async (state: string, offered: string[]) => {
      const expected = offered.map((o) => `${o}…`);
      await until(
        `the plan page to offer ${offered.join(', ')} (demo-01 ${state})`,
        async () => {
          const shown = await operations.getByRole('button').allInnerTexts();
          return JSON.stringify(shown) === JSON.stringify(expected);
        },
        { timeoutMs: 15_000 },
      ).catch(async (e) => {
        assert.deepEqual(await operations.getByRole('button').allInnerTexts(), expected, String(e));
      });
      const others = ALL.filter((o) => !offered.includes(o));
      await notOffered.getByText(`${others.join(', ')}: demo-01 is ${state}`, { exact: true }).waitFor();
      assert.equal((await f.api<Machine>('GET', `/machines/${demo.id}`)).body.state, state);
    };

    /**
     * Clicks an offered operation, makes the dialog's choices, starts it, resumes
     * it at the plan's manual action when it brings machines up, and follows its
     * job on the plan page until the runs list shows it succeeded.
     */
    const run = async (
      title: string,
      { choose, resumes = false }: { choose?: () => Promise<void>; resumes?: boolean } = {},
    ): Promise<string> => {
      await operations.getByRole('button', { name: `${title}…`, exact: true }).click();
      await dialog.getByRole('heading', { name: `${title}: plan billing` }).waitFor();
      await choose?.();
      const started = page.waitForResponse(
        (r) =>
          r.request().method() === 'POST' &&
          new URL(r.url()).pathname.endsWith(`/plans/${planId}/${slug(title)}`),
      );
      await dialog.getByRole('button', { name: title, exact: true }).click();
      const response = await started;
      assert.equal(response.status(), 202, await response.text());
      const jobId = ((await response.json()) as Job).id;
      await dialog.waitFor({ state: 'detached' });
      if (resumes) {
        const active = page.getByTestId('active-job');
        await active.locator('[data-testid="manual-action"]').waitFor({ timeout: 60_000 });
        assert.equal(
          await active.getByRole('link', { name: title, exact: true }).getAttribute('href'),
          `/jobs/${jobId}`,
        );
        // While it runs the page shows its progress, and nothing else can start from it.
        await active.getByRole('progressbar', { name: `${title} of the plan` }).waitFor();
        for (const button of await operations.getByRole('button').all()) assert.ok(await button.isDisabled());
        await active.getByRole('button', { name: 'Resume' }).click();
      }
      const row = page
        .getByTestId('plan-runs')
        .locator('tr', { has: page.locator(`a[href="/jobs/${jobId}"]`) });
      await row.getByRole('link', { name: title, exact: true }).waitFor({ timeout: 30_000 });
      await row.getByText(/^(succeeded|failed|cancelled)$/).waitFor({ timeout: 120_000 });
      const job = (await f.api<Job>('GET', `/jobs/${jobId}`)).body;
      assert.equal(job.state, 'succeeded', `${title}: ${JSON.stringify(job.error)}`);
      lap(title);
      await page.getByTestId('active-job').waitFor({ state: 'detached', timeout: 10_000 });
      return jobId;
    };
    const slug = (title: string) => title.toLowerCase().replaceAll(' ', '-');

    /**
     * The dialog offers an alternate location on the hosts none of the plan's
     * machines runs on, and its request carries the host chosen. The request
     * goes on to the vault with that host emptied, so the vault's own refusal
     * comes back and no job starts (the fixture has no third host to move to).
     */
    const offersAlternateHost = async (title: string, primaryId: string) => {
      await operations.getByRole('button', { name: `${title}…`, exact: true }).click();
      await dialog.getByRole('heading', { name: `${title}: plan billing` }).waitFor();
      await dialog.getByRole('radio', { name: /Alternate location/ }).check();
      const select = dialog.getByLabel('Alternate host');
      assert.deepEqual(await select.locator('option').allInnerTexts(), ['— choose a host —', 'primary']);
      await select.selectOption({ label: 'primary' });
      let posted: Record<string, unknown> | undefined;
      const path = `**/api/v1/plans/${planId}/${slug(title)}`;
      await page.route(path, async (route) => {
        posted = route.request().postDataJSON() as Record<string, unknown>;
        const response = await route.fetch({ postData: JSON.stringify({ ...posted, alternateHostId: '' }) });
        await route.fulfill({ response });
      });
      await dialog.getByRole('button', { name: title, exact: true }).click();
      await dialog
        .getByRole('alert')
        .getByText(/^Invalid body: alternateHostId/)
        .waitFor();
      await page.unroute(path);
      assert.equal(posted?.alternateHostId, primaryId);
      assert.equal('location' in (posted ?? {}), false, 'the location choice stays in the form');
      await dialog.getByText('Close', { exact: true }).click();
      await dialog.waitFor({ state: 'detached' });
      assert.equal(refusals.length, 1, refusals.join('\n'));
      assert.match(refusals[0]!, /status of 400/);
      refusals.length = 0;
    };
    const primaryId = (await f.api<{ hosts: Host[] }>('GET', '/hosts')).body.hosts.find(
      (h) => h.name === 'primary',
    )!.id;
    const t0 = Date.now();
    const lap = (what: string) =>
      process.stdout.write(`# ${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);

    await offers('protected', ['Test failover', 'Failover', 'Planned failover']);
    // Forward and back without data loss: planned failover, synchronised failback, complete failover.
    await run('Planned failover', {
      resumes: true,
      choose: () => dialog.getByLabel(/Power off after/).fill('60'),
    });
    await offers('failed-over', ['Commit']);
    await screenshots(f, page, 'plans-cycle-failed-over');
    await run('Commit');
    await offers('failover-committed', ['Reprotect']);
    await offersAlternateHost('Reprotect', primaryId);
    await run('Reprotect');
    await offers('reverse-protected', ['Failover', 'Failback']);
    await offersAlternateHost('Failback', primaryId);
    // Here Failover goes home: the dialog says it is an unplanned failback.
    await operations.getByRole('button', { name: 'Failover…', exact: true }).click();
    await dialog.getByText(/^Unplanned failback: starts the machine at the primary site/).waitFor();
    await dialog.getByLabel(/Shut down the machines at the recovery site/).waitFor();
    await screenshots(f, page, 'plans-cycle-reverse-protected');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'detached' });
    await run('Failback', { choose: () => dialog.getByLabel(/Synchronise before failover/).check() });
    await offers('failback-ready', ['Complete failover']);
    await screenshots(f, page, 'plans-cycle-failback-ready');
    await run('Complete failover', { resumes: true });
    await offers('failed-back', ['Commit']);
    await run('Commit');
    await offers('failback-committed', ['Reprotect']);
    await run('Reprotect', { choose: () => dialog.getByLabel('Full resynchronisation').check() });
    await offers('protected', ['Test failover', 'Failover', 'Planned failover']);
    lap('planned cycle');

    // Unplanned: failover from a chosen point, back with a full download.
    // The source site is lost in this drill: no shutdown request to wait on (a freshly booted guest may ignore it).
    const failover = await run('Failover', {
      resumes: true,
      choose: async () => {
        await dialog.getByLabel(/Latest processed/).check();
        await dialog.getByLabel('Shut down machines before failover').uncheck();
      },
    });
    await offers('failed-over', ['Commit']);
    await run('Commit');
    await run('Reprotect');
    await offers('reverse-protected', ['Failover', 'Failback']);
    await run('Failback', { resumes: true, choose: () => dialog.getByLabel(/Full download/).check() });
    await offers('failed-back', ['Commit']);
    await run('Commit');
    await run('Reprotect');
    await offers('protected', ['Test failover', 'Failover', 'Planned failover']);
    lap('unplanned cycle');
    const machine = (await f.api<Machine>('GET', `/machines/${demo.id}`)).body;
    assert.equal(machine.activeHostId, machine.primaryHostId, 'demo-01 runs at its primary site again');
    await screenshots(f, page, 'plans-cycle-done');

    // The failover's job, followed from the plan page, names the choice; demo-01's job, the point chosen.
    await page.getByTestId('plan-runs').locator(`a[href="/jobs/${failover}"]`).click();
    await page.locator('section.job[data-job-state="succeeded"]').waitFor();
    await page
      .getByTestId('job-point')
      .getByText(/^Latest processed: for every machine/)
      .waitFor();
    await screenshots(f, page, 'plans-cycle-failover-job');
    // Its machine steps label demo-01's record by its name, and name it only there.
    const stepOutputs = await page.getByTestId('step-output').allInnerTexts();
    const naming = stepOutputs.filter((o) => o.includes('demo-01'));
    assert.ok(naming.length > 0, 'a step output names demo-01');
    for (const o of naming) assert.equal(o.split('demo-01').length - 1, 1, o);
    await page.getByRole('link', { name: 'open its job' }).click();
    await page.locator('section.job[data-job-state="succeeded"] h1').getByText('failover').waitFor();
    await page
      .getByTestId('job-point')
      .getByText(/\(latest processed\)$/)
      .waitFor();
    await page.close();
    assert.deepEqual(refusals, []);
  });

  test('plans: edit, export and import; the list; a job names the plan and links to its page', async () => {
    const refusals: string[] = [];
    const page = await watchedPage(f, operatorToken, refusals);
    await page.goto(`${f.url}/plans/${planId}`);
    await page.getByRole('button', { name: 'Edit' }).click();
    const editor = page.getByTestId('plan-editor');
    await editor.getByLabel('Description').fill('Billing database and its DNS');
    await editor.getByRole('button', { name: 'Save plan' }).click();
    await page.getByText('Billing database and its DNS').waitFor();

    await page.getByRole('button', { name: 'Export…' }).click();
    const exported = JSON.parse(await page.getByLabel('Plan document').inputValue());
    assert.deepEqual(exported.groups[0].machines, ['demo-01']);
    assert.equal(exported.description, 'Billing database and its DNS');
    await page.getByRole('dialog').getByRole('button', { name: 'Done' }).click();

    await page.goto(`${f.url}/plans`);
    await page.getByRole('button', { name: 'Import…' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Plan document').fill(JSON.stringify({ ...exported }));
    await dialog.getByRole('button', { name: 'Import' }).click();
    // Same name, no replace: the vault refuses and says how to overwrite.
    await dialog
      .getByRole('alert')
      .getByText(/already exists; import with replace/)
      .waitFor();
    await dialog.getByLabel('Plan document').fill(JSON.stringify({ ...exported, name: 'billing-copy' }));
    await dialog.getByRole('button', { name: 'Import' }).click();
    await page.getByTestId('plan-name').getByText('billing-copy').waitFor();

    await page.goto(`${f.url}/plans`);
    const row = page.locator('tr[data-plan="billing"]');
    await row.waitFor();
    assert.deepEqual((await row.locator('th, td').allInnerTexts()).map((t) => t.trim()).slice(0, 4), [
      'billing',
      '1',
      '1',
      '1',
    ]);
    const copy = page.locator('tr[data-plan="billing-copy"]');
    await copy.waitFor();
    await screenshots(f, page, 'plans-list');
    // Relative times count on their own, well before the list polls again (every 10 s).
    const changed = copy.locator('time');
    const before = await changed.textContent();
    await until('the relative time to tick', async () => (await changed.textContent()) !== before, {
      timeoutMs: 4000,
    });

    // Deleting a plan asks in the portal's dialog; cancelling keeps it.
    await copy.getByRole('link', { name: 'billing-copy' }).click();
    await page.getByRole('button', { name: 'Delete…' }).click();
    await dialog.getByText(/Its machines are not touched/).waitFor();
    await screenshots(f, page, 'plans-plan-delete');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'detached' });
    await page.getByRole('button', { name: 'Delete…' }).click();
    await dialog.getByRole('button', { name: 'Delete plan' }).click();
    await page.getByRole('heading', { name: 'Recovery plans' }).waitFor();
    await copy.waitFor({ state: 'detached' });

    // From the jobs list, the plan's job links to this page.
    await page.goto(`${f.url}/jobs`);
    await page.getByRole('link', { name: 'billing', exact: true }).first().click();
    await page.getByTestId('plan-name').getByText('billing').waitFor();
    assert.equal(new URL(page.url()).pathname, `/plans/${planId}`);
    await page.close();
    onlyRefusals(refusals);
  });

  test("plan editor: machines picked by search (keyboard too), groups and actions reordered, the saved order is the API's", async () => {
    const hosts = (await f.api<{ hosts: Host[] }>('GET', '/hosts')).body.hosts;
    const register = async (name: string) => {
      const created = await f.api<Machine>('POST', '/machines', {
        name,
        hostId: hosts.find((h) => h.name === 'primary')!.id,
        disks: [{ id: 'disk0', sizeBytes: 1 << 30, source: `/tmp/${name}.img` }],
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      return created.body;
    };
    for (const name of ['web-01', 'web-02', 'app-01']) await register(name);
    const gone = await register('gone-01');

    const refusals: string[] = [];
    const page = await watchedPage(f, operatorToken, refusals);
    await page.goto(`${f.url}/plans`);
    await page.getByRole('button', { name: 'New plan' }).click();
    const editor = page.getByTestId('plan-editor');
    await editor.getByLabel('Plan name').fill('storefront');
    await editor.getByLabel('Group name').fill('web');

    // Keyboard only: the search offers matches with state and site; arrows move, Enter chooses.
    const search = editor.locator('[data-group-index="0"]').getByRole('combobox');
    await search.focus();
    await page.keyboard.type('web');
    const options = editor.locator('[data-group-index="0"] [role="option"]');
    assert.deepEqual(await options.evaluateAll((o) => o.map((e) => e.getAttribute('data-machine'))), [
      'web-01',
      'web-02',
    ]);
    assert.equal(await options.first().locator('.site').textContent(), 'primary');
    assert.equal(await options.first().locator('.badge').textContent(), 'unprotected');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('Enter');
    await editor.locator('[data-group-index="0"] .picked-machine[data-machine="web-02"]').waitFor();
    await page.keyboard.type('web');
    await page.keyboard.press('Enter');
    const picked = editor.locator('[data-group-index="0"] .picked-machine');
    assert.deepEqual(await picked.evaluateAll((o) => o.map((e) => e.getAttribute('data-machine'))), [
      'web-02',
      'web-01',
    ]);
    // Chosen machines are not offered again in their group.
    await page.keyboard.type('web');
    assert.equal(await options.count(), 0);
    await editor.getByText(/No machine named like “web”/).waitFor();
    await search.fill('');

    await editor.getByRole('button', { name: 'Add group' }).click();
    await editor.locator('[data-group-index="1"]').getByLabel('Group name').fill('app');
    await pickMachine(editor, 1, 'app-01');
    // A machine another group lists is shown with that group and cannot be chosen.
    const search1 = editor.locator('[data-group-index="1"]').getByRole('combobox');
    await search1.fill('web-01');
    const taken = editor.locator('[data-group-index="1"] [role="option"][data-machine="web-01"]');
    assert.equal(await taken.getAttribute('aria-disabled'), 'true');
    await taken.getByText('in group web').waitFor();
    await taken.click({ force: true });
    await page.keyboard.press('Enter');
    assert.equal(await editor.locator('[data-group-index="1"] .picked-machine').count(), 1);
    await screenshots(f, page, 'plans-editor-picker');
    await search1.fill('');
    await pickMachine(editor, 1, 'gone-01');

    // Actions before the web group, written in the wrong order and put right with the buttons.
    const web = editor.locator('[data-group-index="0"]');
    for (const name of ['drain', 'snapshot', 'announce']) {
      await web.getByRole('button', { name: 'Add action before' }).click();
      await web.getByLabel('Action name').last().fill(name);
      await web.getByLabel('Instructions').last().fill(`Do ${name}`);
    }
    // By keyboard: the focus stays on the moved action's button.
    await web.getByRole('button', { name: 'Move action 3 before group 1 up' }).focus();
    await page.keyboard.press('Enter');
    assert.equal(
      await page.evaluate(() => document.activeElement?.getAttribute('aria-label')),
      'Move action 2 before group 1 up',
    );
    await page.keyboard.press('Enter');
    // At the top its Move up button is inactive but keeps the focus.
    assert.equal(
      await page.evaluate(() => document.activeElement?.getAttribute('aria-label')),
      'Move action 1 before group 1 up',
    );
    await page.keyboard.press('Enter');
    await web.getByRole('button', { name: 'Move action 2 before group 1 down' }).click();
    assert.deepEqual(
      await web.getByLabel('Action name').evaluateAll((e) => e.map((i) => (i as HTMLInputElement).value)),
      ['announce', 'snapshot', 'drain'],
    );
    assert.equal(
      await web.getByRole('button', { name: 'Move action 1 before group 1 up' }).isDisabled(),
      true,
    );
    // The app group starts first.
    await editor.getByRole('button', { name: 'Move group 2 up' }).click();
    assert.equal(await editor.locator('[data-group-index="0"]').getByLabel('Group name').inputValue(), 'app');
    // Each group's legend names it, in its new place.
    assert.deepEqual(await editor.locator('.plan-group > legend').allInnerTexts(), [
      'Group 1 · app',
      'Group 2 · web',
    ]);

    // A machine deleted while the form was open: the vault's refusal sits at that group's machines.
    assert.equal((await f.api('DELETE', `/machines/${gone.id}`)).status, 204);
    await editor.getByRole('button', { name: 'Create plan' }).click();
    await editor
      .locator('[data-field="groups.0.machines"]')
      .getByText(/machine 'gone-01' does not exist/)
      .waitFor();
    await screenshots(f, page, 'plans-editor-reordered');
    await editor.getByRole('button', { name: 'Remove gone-01 from group 1' }).click();
    // The removed chip's button is gone: the focus is back in that group's search, its list closed.
    const appSearch = editor.locator('[data-group-index="0"]').getByRole('combobox');
    assert.ok(await appSearch.evaluate((e) => e === document.activeElement));
    assert.equal(await appSearch.getAttribute('aria-expanded'), 'false');
    await editor.getByRole('button', { name: 'Create plan' }).click();
    await page.getByTestId('plan-name').getByText('storefront').waitFor();

    const saved = (await f.api<PlanDocument>('GET', '/plans/storefront/export')).body;
    assert.deepEqual(
      saved.groups.map((g) => [g.name, g.machines, (g.before ?? []).map((a) => a.name)]),
      [
        ['app', ['app-01'], []],
        ['web', ['web-02', 'web-01'], ['announce', 'snapshot', 'drain']],
      ],
    );
    // The plan page lists them in that order too.
    assert.deepEqual(
      await page
        .locator('[data-group="web"] [data-action]')
        .evaluateAll((e) => e.map((a) => a.getAttribute('data-action'))),
      ['announce', 'snapshot', 'drain'],
    );

    // Editing keeps the order and can change it again.
    await page.getByRole('button', { name: 'Edit' }).click();
    await editor.getByRole('button', { name: 'Move group 1 down' }).click();
    await editor.getByRole('button', { name: 'Remove web-02 from group 1' }).click();
    assert.ok(
      await editor
        .locator('[data-group-index="0"] input[role="combobox"]')
        .evaluate((e) => e === document.activeElement),
    );
    await editor.getByRole('button', { name: 'Save plan' }).click();
    await editor.waitFor({ state: 'detached' });
    const edited = (await f.api<PlanDocument>('GET', '/plans/storefront/export')).body;
    assert.deepEqual(
      edited.groups.map((g) => [g.name, g.machines]),
      [
        ['web', ['web-01']],
        ['app', ['app-01']],
      ],
    );
    await page.close();
    onlyRefusals(refusals);
  });

  test('plans export as YAML (downloaded, named after the plan) and import again as a new plan, from a file or pasted', async () => {
    const refusals: string[] = [];
    const page = await watchedPage(f, operatorToken, refusals);
    await page.goto(`${f.url}/plans`);
    await page.locator('tr[data-plan="storefront"]').getByRole('link', { name: 'storefront' }).click();
    await page.getByRole('button', { name: 'Export…' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('radio', { name: 'YAML' }).check();
    const planDocument = dialog.getByLabel('Plan document');
    await dialog.locator('textarea[data-format="yaml"]').waitFor();
    const yaml = await planDocument.inputValue();
    assert.match(yaml, /^name: storefront$/m);
    const served = await fetch(`${f.url}/api/v1/plans/storefront/export?format=yaml`, {
      headers: { authorization: `Bearer ${f.adminToken}` },
    });
    assert.equal(yaml, await served.text());
    await screenshots(f, page, 'plans-export-yaml');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      dialog.getByRole('link', { name: 'Download storefront.yaml' }).click(),
    ]);
    assert.equal(download.suggestedFilename(), 'storefront.yaml');
    const downloaded = await readFile((await download.path())!, 'utf8');
    assert.equal(downloaded, yaml);
    await dialog.getByRole('button', { name: 'Done' }).click();

    // The file as it is: the plan exists, the vault says so in the dialog.
    await page.goto(`${f.url}/plans`);
    await page.getByRole('button', { name: 'Import…' }).click();
    await dialog.getByLabel('From a file').setInputFiles({
      name: 'storefront.yaml',
      mimeType: 'application/yaml',
      buffer: Buffer.from(downloaded),
    });
    // The browser reads the file, then the format follows its name.
    await until(
      'YAML chosen for storefront.yaml',
      () => dialog.getByRole('radio', { name: 'YAML' }).isChecked(),
      {
        timeoutMs: 5000,
      },
    );
    await dialog.getByRole('button', { name: 'Import' }).click();
    await dialog
      .getByRole('alert')
      .getByText(/already exists; import with replace/)
      .waitFor();
    // Broken YAML is refused with the parser's words.
    await dialog.getByLabel(/^Plan document/).fill('name: [unclosed');
    await dialog.getByRole('button', { name: 'Import' }).click();
    await dialog
      .getByRole('alert')
      .getByText(/not valid YAML/)
      .waitFor();
    await screenshots(f, page, 'plans-import-refused');
    // Pasted under a new name (the format follows what is pasted into the empty box).
    await dialog.getByLabel(/^Plan document/).fill('');
    await dialog.getByRole('radio', { name: 'JSON' }).check();
    await dialog.getByLabel(/^Plan document/).focus();
    await page.evaluate(
      (text) => {
        const data = new DataTransfer();
        data.setData('text/plain', text);
        document.activeElement!.dispatchEvent(
          new ClipboardEvent('paste', { clipboardData: data, bubbles: true }),
        );
      },
      downloaded.replace(/^name: storefront$/m, 'name: storefront-yaml'),
    );
    await dialog
      .getByLabel(/^Plan document/)
      .fill(downloaded.replace(/^name: storefront$/m, 'name: storefront-yaml'));
    assert.equal(await dialog.getByRole('radio', { name: 'YAML' }).isChecked(), true);
    await dialog.getByRole('button', { name: 'Import' }).click();
    await page.getByTestId('plan-name').getByText('storefront-yaml').waitFor();
    const original = (await f.api<PlanDocument>('GET', '/plans/storefront/export')).body;
    const copy = (await f.api<PlanDocument>('GET', '/plans/storefront-yaml/export')).body;
    assert.deepEqual(copy, { ...original, name: 'storefront-yaml' });
    await page.close();
    onlyRefusals(refusals);

    // A viewer exports too (YAML included), and finds nothing to edit.
    const viewer = await watchedPage(f, viewerToken, consoleErrors);
    await viewer.goto(`${f.url}/plans/storefront`);
    await viewer.getByTestId('plan-name').getByText('storefront').waitFor();
    await viewer.waitForLoadState('networkidle');
    assert.deepEqual(await viewer.locator('main button').allInnerTexts(), ['Export…']);
    await viewer.getByRole('button', { name: 'Export…' }).click();
    await viewer.getByRole('dialog').getByRole('radio', { name: 'YAML' }).check();
    await viewer.locator('textarea[data-format="yaml"]').waitFor();
    await viewer.getByRole('link', { name: 'Download storefront.yaml' }).waitFor();
    assert.equal(await viewer.getByRole('combobox').count(), 0);
    await viewer.close();
  });

  test('drills: an operator runs one of demo-01 and sees it pass, proven; its page, report; schedules (refusal at the field); a viewer sees no action and no script output', async () => {
    const refusals: string[] = [];
    const page = await watchedPage(f, operatorToken, refusals);
    await page.goto(`${f.url}/machines/${demo.id}`);
    const card = page.getByTestId('proof-card');
    await card.locator('[data-proof="none"]').getByText('Not proven').waitFor();
    await card.getByTestId('run-drill').click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel(/Boot: console pattern/).fill('recovered \\d+ ok');
    assert.equal(await dialog.getByLabel(/Check every filesystem/).isChecked(), true);
    await dialog.getByRole('button', { name: 'Run drill', exact: true }).click();
    await page.waitForURL(/\/drills\/[0-9a-f-]+$/);
    const drillId = new URL(page.url()).pathname.split('/').pop()!;
    // Followed while it runs: its progress, then its end.
    await page.locator('section.drill-page').waitFor();
    const ended = await until(
      'the drill to end',
      async () => {
        const state = await page.locator('section.drill-page').getAttribute('data-drill-state');
        return state && !['waiting', 'running'].includes(state) ? state : undefined;
      },
      { timeoutMs: 240_000 },
    );
    assert.equal(ended, 'passed', (await page.locator('main').textContent()) ?? '');
    const machine = page.locator('[data-drill-machine="demo-01"]');
    await machine.locator('[data-check="boot"][data-result="passed"]').waitFor();
    assert.ok((await machine.locator('[data-check="filesystems"][data-result="passed"]').count()) >= 1);
    assert.match((await machine.getByTestId('drill-rto').textContent()) ?? '', /\d+(\.\d+)? s$/);
    await machine.getByTestId('drill-cleanup-state').getByText(/^done/).waitFor();
    await screenshots(f, page, 'drill-passed');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('button[data-report="markdown"]').click(),
    ]);
    assert.equal(download.suggestedFilename(), `drill-${drillId.slice(0, 8)}.md`);
    const report = await readFile((await download.path())!, 'utf8');
    assert.match(report, /^# Drill report: demo-01$/m);
    assert.match(report, /PASSED: boot/);

    // The machine page, list and dashboard say it is proven (green only now that a drill passed).
    await page.goto(`${f.url}/machines/${demo.id}`);
    const proven = card.locator('[data-proof="proven"]');
    await proven.getByText(/^Proven /).waitFor();
    assert.match((await proven.textContent()) ?? '', /point of .* · RTO \d/);
    await card.locator(`tr[data-drill="${drillId}"] [data-drill-state="passed"]`).waitFor();
    await card.scrollIntoViewIfNeeded();
    await screenshots(f, page, 'machine-proof');
    await page.goto(`${f.url}/machines`);
    await page.locator('tr', { hasText: 'demo-01' }).locator('[data-proof="proven"]').waitFor();
    await page.goto(`${f.url}/`);
    await page
      .getByTestId('proof-counts')
      .locator('[data-proof-count="proven"] [data-of="machines"]')
      .getByText('1', { exact: true })
      .waitFor();

    // A schedule: a bad time is refused at its field; then a good one is listed, disabled and deleted.
    await page.goto(`${f.url}/drills`);
    await page.locator(`tr[data-drill="${drillId}"]`).waitFor();
    await page.getByTestId('new-drill-schedule').click();
    const form = page.getByTestId('drill-schedule-form');
    await form.getByLabel('Name', { exact: true }).fill('nightly-demo');
    await form.getByLabel('Machine', { exact: true }).selectOption('demo-01');
    await form.getByLabel('At (HH:MM, 24-hour)').fill('25:00');
    await form.getByLabel('Time zone').fill('Europe/Amsterdam');
    await form.getByLabel(/Boot: console pattern/).fill('recovered \\d+ ok');
    await form.getByRole('button', { name: 'Create schedule' }).click();
    await form
      .locator('[data-field="cadence.at"]')
      .getByText(/not a time of day/)
      .waitFor();
    await screenshots(f, page, 'drills-schedule-refused');
    await form.getByLabel('At (HH:MM, 24-hour)').fill('02:00');
    await form.getByRole('button', { name: 'Create schedule' }).click();
    const row = page.locator('tr[data-schedule="nightly-demo"]');
    await row.getByText('daily at 02:00 Europe/Amsterdam').waitFor();
    await screenshots(f, page, 'drills-page');
    await row.getByRole('button', { name: 'Disable' }).click();
    await row.getByText('disabled').waitFor();
    const [schedule] = (
      await f.api<{ schedules: { name: string; enabled: boolean; checks: unknown }[] }>(
        'GET',
        '/drill-schedules',
      )
    ).body.schedules;
    assert.equal(schedule?.enabled, false);
    assert.deepEqual(schedule?.checks, {
      filesystems: true,
      script: null,
      boot: { consolePattern: 'recovered \\d+ ok', timeoutSeconds: 120 },
    });
    await page.close();
    onlyRefusals(refusals);

    // A drill whose application check printed something: operators see it, viewers only the result.
    const { store } = f.haven.vault.context;
    const passed = (await store.drillRuns.get(drillId))!;
    const scripted = {
      ...passed,
      id: randomUUID(),
      jobId: null,
      machines: passed.machines.map((m) => ({
        ...m,
        checks: [
          ...m.checks,
          {
            kind: 'application' as const,
            name: 'script check-records',
            result: 'passed' as const,
            summary: 'exit 0 in 1 s',
            evidence: 'orders=1204 recovered',
            evidenceIsScriptOutput: true,
            startedAt: passed.endedAt!,
            durationMs: 1000,
          },
        ],
      })),
    };
    await store.drillRuns.create(scripted);
    const operator = await watchedPage(f, operatorToken, consoleErrors);
    await operator.goto(`${f.url}/drills/${scripted.id}`);
    const application = operator.locator('[data-check="application"]');
    await application.getByText('Evidence').click();
    await application.getByText('orders=1204 recovered').waitFor();
    await operator.close();
    const viewer = await watchedPage(f, viewerToken, consoleErrors);
    await viewer.goto(`${f.url}/drills/${scripted.id}`);
    await viewer.locator('[data-check="application"][data-result="passed"]').waitFor();
    await viewer.getByTestId('script-output-hidden').waitFor();
    assert.doesNotMatch((await viewer.locator('main').textContent()) ?? '', /orders=1204/);
    await screenshots(f, viewer, 'drill-viewer');
    for (const path of ['/drills', `/machines/${demo.id}`, `/drills/${scripted.id}`]) {
      await viewer.goto(`${f.url}${path}`);
      await viewer.locator('main h1').waitFor();
      await viewer.waitForLoadState('networkidle');
      const buttons = (await viewer.locator('main button').allInnerTexts()).filter(
        (b) => !/Earlier|Later|Zoom|All points|^Last /.test(b),
      );
      // A viewer may download a report: reading, not acting.
      const allowed = path.startsWith('/drills/') ? ['Markdown', 'HTML', 'JSON'] : [];
      assert.deepEqual(buttons, allowed, `${path} shows a viewer ${buttons.join(', ')}`);
    }
    await viewer.goto(`${f.url}/drills`);
    await viewer.locator('tr[data-schedule="nightly-demo"]').waitFor();
    await screenshots(f, viewer, 'drills-page-viewer');
    await viewer.close();
  });

  test('drills: an operator drills plan billing from its page (proven, its measured RTO in the estimate, counted on the dashboard); a drill that fails shows its reason and console, turns the badge red and raises an alert', async () => {
    const refusals: string[] = [];
    const page = await watchedPage(f, operatorToken, refusals);
    /** Waits on the drill page for its end and returns its state. */
    const drillEnds = async (what: string) => {
      await page.waitForURL(/\/drills\/[0-9a-f-]+$/);
      await page.locator('section.drill-page').waitFor();
      const state = await until(
        what,
        async () => {
          const state = await page.locator('section.drill-page').getAttribute('data-drill-state');
          return state && !['waiting', 'running'].includes(state) ? state : undefined;
        },
        { timeoutMs: 240_000 },
      );
      return { state, drillId: new URL(page.url()).pathname.split('/').pop()! };
    };

    // The plan page offers the same drill dialog as a machine's, for the whole plan.
    await page.goto(`${f.url}/plans/${planId}`);
    const card = page.getByTestId('proof-card');
    await card.locator('[data-proof="none"]').getByText('Not proven').waitFor();
    await card.getByTestId('run-drill').click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('heading', { name: 'Run a drill of plan billing' }).waitFor();
    await dialog.getByLabel(/Boot: console pattern/).fill('recovered \\d+ ok');
    await screenshots(f, page, 'drill-plan-dialog');
    await dialog.getByRole('button', { name: 'Run drill', exact: true }).click();
    const plan = await drillEnds('the plan drill to end');
    assert.equal(plan.state, 'passed', (await page.locator('main').textContent()) ?? '');
    await page.locator('h1').getByText('Drill of plan billing').waitFor();
    const machine = page.locator('[data-drill-machine="demo-01"]');
    await machine.locator('[data-check="boot"][data-result="passed"]').waitFor();
    // The plan's manual action is recorded as not performed: never counted as passed.
    await page.locator('[data-check="plan"][data-result="not-checked"]').first().waitFor();
    await machine.getByTestId('drill-cleanup-state').getByText(/^done/).waitFor();
    const planRto = (await page.getByTestId('drill-plan-rto').textContent()) ?? '';
    assert.match(planRto, /^\d+(\.\d+)? s$/);
    await screenshots(f, page, 'drill-plan-passed');

    // Back on the plan page: proven, the drill in its history, its RTO measured in the estimate.
    await page.getByRole('link', { name: 'billing', exact: true }).click();
    await card
      .locator('[data-proof="proven"]')
      .getByText(/^Proven /)
      .waitFor();
    assert.match((await card.locator('[data-proof="proven"]').textContent()) ?? '', /RTO \d/);
    await card.locator(`tr[data-drill="${plan.drillId}"] [data-drill-state="passed"]`).waitFor();
    await page.getByTestId('rto').locator('[data-measured-rto]').getByText(`measured ${planRto}`).waitFor();
    // Its job is in the plan's runs, named in words.
    await page.getByTestId('plan-runs').getByRole('link', { name: 'Plan drill', exact: true }).waitFor();
    await card.scrollIntoViewIfNeeded();
    await screenshots(f, page, 'plan-proof');
    await page.goto(`${f.url}/plans`);
    await page.locator('tr[data-plan="billing"] [data-proof="proven"]').waitFor();
    await page.goto(`${f.url}/`);
    const counts = page.getByTestId('proof-counts');
    await counts
      .locator('[data-proof-count="proven"] [data-of="plans"]')
      .getByText('1', { exact: true })
      .waitFor();
    const plans = (await f.api<{ plans: unknown[] }>('GET', '/plans')).body.plans;
    await counts
      .locator('[data-proof-count="none"] [data-of="plans"]')
      .getByText(String(plans.length - 1), { exact: true })
      .waitFor();
    await screenshots(f, page, 'dashboard-proofs');

    // A drill that cannot pass: its boot pattern never appears within 5 s.
    await page.goto(`${f.url}/machines/${demo.id}`);
    await card.getByTestId('run-drill').click();
    await dialog.getByLabel(/Boot: console pattern/).fill('never printed by any guest');
    await dialog.getByLabel(/Boot: wait at most/).fill('5');
    await dialog.getByLabel(/Check every filesystem/).uncheck();
    await dialog.getByRole('button', { name: 'Run drill', exact: true }).click();
    const failed = await drillEnds('the failing drill to end');
    assert.equal(failed.state, 'failed', (await page.locator('main').textContent()) ?? '');
    await page.locator('.drill-page > .error-line').getByText(/boot/).waitFor();
    const boot = page.locator('[data-drill-machine="demo-01"] [data-check="boot"][data-result="failed"]');
    await boot.getByText(/no \/never printed by any guest\/ on the console within 5 s/).waitFor();
    await page.getByTestId('drill-rto').getByText('— (it did not come up)').waitFor();
    await page.getByTestId('drill-check-counts').getByText('1 failed', { exact: true }).waitFor();
    assert.doesNotMatch((await page.getByTestId('drill-check-counts').textContent()) ?? '', /passed/);
    // The console as it was, open: the evidence of why it failed.
    const evidence = boot.getByTestId('check-evidence');
    await evidence.waitFor();
    assert.ok(((await evidence.textContent()) ?? '').trim().length > 0, 'the console is kept as evidence');
    await page.getByTestId('drill-cleanup-state').getByText(/^done/).waitFor();
    await screenshots(f, page, 'drill-failed');

    // The machine is red now, never green: its last drill failed, though an older one proved it.
    await page.goto(`${f.url}/machines/${demo.id}`);
    await card
      .locator('p[data-proof="failed"]')
      .getByText(/^Last drill failed/)
      .waitFor();
    // The older proof is still told, but not in green.
    await card
      .locator('p.muted[data-proof="proven"]')
      .getByText(/^Last proven /)
      .waitFor();
    assert.equal(await card.locator('p.ok').count(), 0);
    await card.locator(`tr[data-drill="${failed.drillId}"] [data-drill-state="failed"]`).waitFor();
    await card.scrollIntoViewIfNeeded();
    await screenshots(f, page, 'machine-proof-failed');
    await page.goto(`${f.url}/machines`);
    const badge = page.locator('tr', { hasText: 'demo-01' }).locator('[data-proof]');
    await badge.and(page.locator('[data-proof="failed"]')).waitFor();
    assert.equal(
      await page.locator('tr', { hasText: 'demo-01' }).locator('[data-proof="proven"]').count(),
      0,
    );
    await page.goto(`${f.url}/`);
    await counts
      .locator('[data-proof-count="failed"] [data-of="machines"]')
      .getByText('1', { exact: true })
      .waitFor();
    await page.goto(`${f.url}/alerts`);
    const alert = page.locator('tr[data-alert^="drill-failed:machine:"]');
    await alert
      .getByText(new RegExp(`Machine 'demo-01': drill ${failed.drillId.slice(0, 8)} failed`))
      .waitFor();
    await screenshots(f, page, 'drill-failed-alert');
    await page.close();
    assert.deepEqual(refusals, []);
  });

  test("drill schedules: an operator edits one (refused at its field, then saved) and deletes it in the portal's dialog", async () => {
    const refusals: string[] = [];
    const page = await watchedPage(f, operatorToken, refusals);
    await page.goto(`${f.url}/drills`);
    const row = page.locator('tr[data-schedule="nightly-demo"]');
    await row.getByRole('button', { name: 'Edit…' }).click();
    const form = page.getByTestId('drill-schedule-form');
    // The form holds the schedule as saved.
    assert.equal(await form.getByLabel('At (HH:MM, 24-hour)').inputValue(), '02:00');
    assert.equal(await form.getByLabel(/Boot: console pattern/).inputValue(), 'recovered \\d+ ok');
    await form.getByLabel('every N hours').check();
    await form.getByLabel('Every (hours)').fill('0');
    await form.getByRole('button', { name: 'Save schedule' }).click();
    await form
      .locator('[data-field="cadence.hours"]')
      .getByText(/hours must be between/)
      .waitFor();
    assert.equal(await form.getByLabel('Every (hours)').getAttribute('aria-invalid'), 'true');
    await form.locator('[data-field="cadence.hours"]').evaluate((e) => e.scrollIntoView({ block: 'center' }));
    await screenshots(f, page, 'drills-schedule-edit-refused');
    await form.getByLabel('Every (hours)').fill('12');
    await form.getByLabel('Enabled').check();
    await form.getByRole('button', { name: 'Save schedule' }).click();
    await form.waitFor({ state: 'detached' });
    await row.getByText('every 12 h').waitFor();
    const saved = (
      await f.api<{ cadence: unknown; enabled: boolean }>('GET', '/drill-schedules/nightly-demo')
    ).body;
    assert.deepEqual(saved.cadence, { kind: 'every', hours: 12 });
    assert.equal(saved.enabled, true);
    // Enabled again, it must not drill in the middle of the test: disabled before it could be due.
    await row.getByRole('button', { name: 'Disable' }).click();
    await row.getByText('disabled').waitFor();

    await row.getByRole('button', { name: 'Delete…' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText('Delete drill schedule nightly-demo?').waitFor();
    await screenshots(f, page, 'drills-schedule-delete');
    await dialog.getByRole('button', { name: 'Delete schedule' }).click();
    await row.waitFor({ state: 'detached' });
    assert.equal((await f.api('GET', '/drill-schedules/nightly-demo')).status, 404);
    // Its drills are kept.
    await page.locator('[data-testid="drill-history"] tr[data-drill]').first().waitFor();
    await page.getByText('No drill schedules yet.').waitFor();
    await page.close();
    onlyRefusals(refusals);
  });

  test('a viewer sees plans, groups and policies but no action (export only)', async () => {
    const page = await watchedPage(f, viewerToken, consoleErrors);
    for (const path of ['/plans', `/plans/${planId}`, '/groups', '/groups/app', '/policies']) {
      await page.goto(`${f.url}${path}`);
      await page.locator('main h1').waitFor();
      await page.waitForLoadState('networkidle');
      const buttons = await page.locator('main button').allInnerTexts();
      const allowed = path.startsWith('/plans/') ? ['Export…'] : [];
      assert.deepEqual(buttons, allowed, `${path} shows a viewer ${buttons.join(', ')}`);
    }
    await page.goto(`${f.url}/plans/${planId}`);
    await page.locator('[data-group="database"]').waitFor();
    await f.screenshot(page, 'plans-plan-viewer');
    await page.close();
  });

  test('no request left the vault, no page error, no console error', () => {
    assert.deepEqual(f.foreignRequests, []);
    assert.deepEqual(f.pageErrors, []);
    assert.deepEqual(consoleErrors, []);
  });
});
