import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Host, Machine, Policy } from '../domain/model.ts';
import { buildPortal, type PortalFixture, startPortalFixture } from './portal-fixture.ts';

/**
 * The portal in a real browser (Debian's chromium through playwright-core)
 * against a real `haven up`. Each test leaves a screenshot in SCREENSHOT_DIR.
 */
describe('portal', { timeout: 120_000 }, () => {
  let f: PortalFixture;
  let hosts: Host[];

  before(async () => {
    await buildPortal();
    f = await startPortalFixture();
    hosts = (await f.api<{ hosts: Host[] }>('GET', '/hosts')).body.hosts;
  });
  after(async () => {
    await f?.stop();
  });

  async function createMachine(name: string, protect: boolean): Promise<Machine> {
    const primary = hosts.find((h) => h.name === 'primary')!;
    const created = await f.api<Machine>('POST', '/machines', {
      name,
      hostId: primary.id,
      disks: [{ id: 'disk0', sizeBytes: 1073741824, source: '/tmp/x.img' }],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    if (!protect) return created.body;
    // Enabling replication needs the data path (issues 3-4); until then the test puts
    // the machine where replication would leave it, straight in the vault's store.
    const recovery = hosts.find((h) => h.name === 'recovery')!;
    const policy = (await f.api<{ policies: Policy[] }>('GET', '/policies')).body.policies.find(
      (p) => !p.builtIn,
    )!;
    const store = f.haven.vault.context.store;
    const machine: Machine = {
      ...created.body,
      state: 'protected',
      health: 'healthy',
      recoveryHostId: recovery.id,
      policyId: policy.id,
    };
    delete (machine as Partial<Machine & { allowedOperations: unknown }>).allowedOperations;
    await store.machines.update(machine);
    assert.ok(
      await store.machines.transition(machine.id, 'unprotected', 'protected', null, machine.updatedAt),
    );
    const now = Date.now();
    for (let i = 0; i < 12; i++) {
      await store.recoveryPoints.add({
        id: `${name}-p${i}`,
        machineId: machine.id,
        time: new Date(now - (12 - i) * 5 * 60_000).toISOString(),
        type: i % 4 === 3 ? 'app-consistent' : 'crash-consistent',
        groupPointId: null,
        processed: i < 11,
        sizeBytes: 4096 * (i + 1),
      });
    }
    return machine;
  }

  test('the vault serves the portal: deep links get index.html (not cached), assets their types, /api stays JSON', async () => {
    const deep = await fetch(`${f.url}/machines/some-machine`);
    assert.equal(deep.status, 200);
    assert.match(deep.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(deep.headers.get('cache-control'), 'no-store');
    assert.match(deep.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    const html = await deep.text();
    const script = html.match(/src="(\/assets\/[^"]+\.js)"/)?.[1];
    assert.ok(script, html);
    const js = await fetch(`${f.url}${script}`);
    assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.match(js.headers.get('cache-control') ?? '', /immutable/);
    const missing = await fetch(`${f.url}/assets/nope.js`);
    assert.equal(missing.status, 404);
    const api = await fetch(`${f.url}/api/v1/nope`);
    assert.equal(api.status, 404);
    assert.equal(((await api.json()) as { error: { code: string } }).error.code, 'not_found');
    const traversal = await fetch(`${f.url}/%2e%2e/%2e%2e/package.json`);
    assert.notEqual(traversal.status, 200);
  });

  test('sign in with the admin token and see the hosts on the dashboard', async () => {
    const page = await f.newPage();
    await page.goto(f.url);
    await page.getByLabel('API token').fill('hvn_wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page
      .getByRole('alert')
      .getByText(/Unknown or revoked/)
      .waitFor();
    await page.getByLabel('API token').fill(f.adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await page.getByTestId('who').getByText('admin').first().waitFor();
    const hostList = page.getByTestId('hosts');
    await hostList.getByText('primary', { exact: true }).waitFor();
    await hostList.getByText('recovery', { exact: true }).waitFor();
    // The token survives a reload of this tab.
    await page.reload();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await f.screenshot(page, '1-dashboard-admin');
    await page.setViewportSize({ width: 390, height: 844 });
    await f.screenshot(page, '1-dashboard-narrow');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the narrow dashboard scrolls sideways by ${overflow}px`);
    await page.close();
  });

  test('machine page: test failover dialog shows the vault answer (a job, or its clear refusal)', async () => {
    const machine = await createMachine('web-1', true);
    const page = await f.newPage({ token: f.adminToken });
    await page.goto(`${f.url}/machines`);
    await page.getByRole('link', { name: 'web-1' }).click();
    await page.getByRole('heading', { name: /web-1/ }).waitFor();
    await page.getByText('disk0').waitFor();
    await page.getByText('1.0 GiB').waitFor();
    assert.equal(page.url(), `${f.url}/machines/${machine.id}`);

    // Pick a point on the timeline: it becomes the dialog's custom point.
    await page.locator('.point').first().click();
    // Keyboard: the action is a real button; the dialog traps focus and Escape closes it.
    const button = page.getByRole('button', { name: 'Test failover…' });
    await button.focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    assert.equal(await dialog.getByLabel('Custom').isChecked(), true);
    assert.equal(await dialog.getByLabel('Test network').inputValue(), 'recovery-test');
    await f.screenshot(page, '2-test-failover-dialog');
    for (let i = 0; i < 25; i++) await page.keyboard.press('Tab');
    assert.equal(
      await dialog.evaluate((d) => d.contains(document.activeElement)),
      true,
      'focus left the dialog',
    );
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });

    await button.click();
    await dialog.getByLabel('Latest processed').check();
    await dialog.getByRole('button', { name: 'Test failover', exact: true }).click();
    // Today the vault refuses (501 not_available: no data path yet). Once the data path
    // lands the same click opens the job page, which must reach a final state.
    const refusal = dialog.getByRole('alert');
    const jobPage = page.locator('[data-job-state]');
    await Promise.race([refusal.waitFor(), jobPage.waitFor()]);
    if (await refusal.isVisible()) {
      const text = (await refusal.textContent()) ?? '';
      assert.match(text, /test-failover is not available yet/);
      assert.match(text, /unchanged \(protected\)/);
      assert.equal(await refusal.getAttribute('data-code'), 'not_available');
      await f.screenshot(page, '2-test-failover-refused');
      await page.keyboard.press('Escape');
    } else {
      await page
        .locator('[data-job-state="succeeded"], [data-job-state="failed"]')
        .waitFor({ timeout: 60_000 });
      await f.screenshot(page, '2-test-failover-job');
    }

    // The failover dialog: point options with their trade-off, shutdown checkbox, no-cancel warning.
    await page.goto(`${f.url}/machines/${machine.id}`);
    await page.getByRole('button', { name: 'Failover…', exact: true }).click();
    await dialog.getByText(/lowest RTO/).waitFor();
    await dialog.getByText(/lowest RPO/).waitFor();
    assert.equal(await dialog.getByLabel(/Shut down machine before failover/).isChecked(), true);
    await dialog.getByText(/cannot be cancelled/).waitFor();
    assert.equal(await dialog.getByLabel('Latest multi-machine processed').isDisabled(), true);
    await f.screenshot(page, '2-failover-dialog');
    await page.close();
  });

  test('recovery settings: problems from the vault show at their fields', async () => {
    const machine = await createMachine('db-1', false);
    const page = await f.newPage({ token: f.adminToken });
    await page.goto(`${f.url}/machines/${machine.id}`);
    await page.getByLabel('CPUs').fill('0');
    await page.getByRole('button', { name: 'Add network adapter' }).click();
    await page.getByLabel('MAC address').fill('not-a-mac');
    await page.getByRole('button', { name: 'Save recovery settings' }).click();
    await page.locator('[data-field="cpus"]').waitFor();
    await page.locator('[data-field="nics.0.mac"]').waitFor();
    assert.equal(await page.getByLabel('CPUs').getAttribute('aria-invalid'), 'true');
    await f.screenshot(page, '3-settings-problems');
    await page.getByLabel('CPUs').fill('2');
    await page.getByRole('button', { name: 'Remove adapter 1' }).click();
    await page.getByRole('button', { name: 'Save recovery settings' }).click();
    await page.getByText('Saved.').waitFor();
    const saved = await f.api<Machine>('GET', `/machines/${machine.id}`);
    assert.equal(saved.body.recoverySettings.cpus, 2);
    await page.close();
  });

  test('a job page follows the job live over server-sent events', async () => {
    const page = await f.newPage({ token: f.adminToken });
    await page.goto(`${f.url}/jobs`);
    await page.getByRole('heading', { name: 'Jobs' }).waitFor();
    const job = await f.api<{ id: string }>('POST', '/vault/backup', {});
    assert.equal(job.status, 202);
    await page.evaluate(() => {
      (window as unknown as { stayed: boolean }).stayed = true;
    });
    await page.getByRole('link', { name: 'vault-backup' }).first().click();
    await page.locator('[data-job-state="succeeded"]').waitFor({ timeout: 30_000 });
    await page.getByText('Verify the backup').waitFor();
    assert.equal(await page.locator('[data-step-state="succeeded"]').count(), 2);
    assert.equal(
      await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed),
      true,
      'page reloaded',
    );
    await f.screenshot(page, '4-job-page');
    await page.close();
  });

  test('a viewer sees the machines but no action buttons', async () => {
    const machine = (await f.api<{ machines: Machine[] }>('GET', '/machines')).body.machines.find(
      (m) => m.name === 'web-1',
    )!;
    const created = await f.api<{ token: string }>('POST', '/tokens', { name: 'auditor', role: 'viewer' });
    assert.equal(created.status, 201);
    const page = await f.newPage({ token: created.body.token });
    await page.goto(`${f.url}/machines/${machine.id}`);
    await page.getByRole('heading', { name: /web-1/ }).waitFor();
    await page.getByTestId('who').getByText('viewer').waitFor();
    await page.getByText('disk0').waitFor();
    assert.equal(await page.locator('button[data-operation]').count(), 0);
    assert.equal(await page.getByRole('button', { name: /failover/i }).count(), 0);
    assert.equal(await page.getByRole('button', { name: 'Save recovery settings' }).count(), 0);
    await f.screenshot(page, '5-viewer-machine');
    await page.close();
  });

  test('the dashboard with 1,000 machines renders in under a second', async (t) => {
    const primary = hosts.find((h) => h.name === 'primary')!;
    const existing = (await f.api<{ machines: Machine[] }>('GET', '/machines')).body.machines.length;
    const names = Array.from({ length: 1000 - existing }, (_, i) => `vm-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < names.length; i += 25) {
      await Promise.all(
        names.slice(i, i + 25).map(async (name) => {
          const r = await f.api('POST', '/machines', {
            name,
            hostId: primary.id,
            disks: [{ id: 'disk0', sizeBytes: 1073741824, source: `/tmp/${name}.img` }],
          });
          assert.equal(r.status, 201);
        }),
      );
    }
    // Fifty of them protected, with points: the RPO chart asks the vault for its 40 bars.
    const store = f.haven.vault.context.store;
    const policy = (await f.api<{ policies: Policy[] }>('GET', '/policies')).body.policies.find(
      (p) => !p.builtIn,
    )!;
    const recovery = hosts.find((h) => h.name === 'recovery')!;
    const now = Date.now();
    for (const name of names.slice(0, 50)) {
      const m = (await store.machines.getByName(name))!;
      await store.machines.update({
        ...m,
        recoveryHostId: recovery.id,
        policyId: policy.id,
        health: 'healthy',
      });
      await store.machines.transition(m.id, 'unprotected', 'protected', null, m.updatedAt);
      await store.recoveryPoints.add({
        id: `${name}-p`,
        machineId: m.id,
        time: new Date(now - (names.indexOf(name) + 1) * 30_000).toISOString(),
        type: 'crash-consistent',
        groupPointId: null,
        processed: true,
        sizeBytes: 4096,
      });
    }
    const page = await f.newPage({ token: f.adminToken });
    const readyAfter = async () => {
      await page.goto(f.url);
      await page.waitForFunction(() => performance.getEntriesByName('haven:dashboard-ready').length > 0);
      return page.evaluate(() => performance.getEntriesByName('haven:dashboard-ready')[0]!.startTime);
    };
    // First visit of the tab (asks the vault who the token is first), then the operator's next visit.
    const cold = await readyAfter();
    const ms = await readyAfter();
    console.log(
      `portal: dashboard with 1,000 machines, first visit of the tab ready after ${Math.round(cold)} ms`,
    );
    const counts = await page.getByTestId('counts-state').locator('.count').allTextContents();
    assert.equal(
      counts.reduce((sum, c) => sum + Number(c), 0),
      1000,
    );
    assert.equal(await page.locator('.chart svg g.rpo-ok, .chart svg g.rpo-over').count(), 40);
    const timings = await page.evaluate(() =>
      performance
        .getEntriesByType('resource')
        .map(
          (e) =>
            `${e.name.replace(location.origin, '')} ${Math.round(e.startTime)}+${Math.round(e.duration)}`,
        ),
    );
    console.log(timings.join('\n'));
    t.diagnostic(`dashboard with 1,000 machines ready ${Math.round(ms)} ms after navigation start`);
    console.log(`portal: dashboard with 1,000 machines ready ${Math.round(ms)} ms after navigation start`);
    await f.screenshot(page, '6-dashboard-1000');
    assert.ok(ms < 1000, `dashboard took ${Math.round(ms)} ms`);
    await page.goto(`${f.url}/machines?state=unprotected`);
    await page.getByText(/of 1000 machines/).waitFor();
    await f.screenshot(page, '6-machines-1000');
    await page.close();
  });

  test('no request left the vault and no page error happened', () => {
    assert.deepEqual(f.foreignRequests, []);
    assert.deepEqual(f.pageErrors, []);
  });
});
