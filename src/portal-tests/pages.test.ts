import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Alert, Host, Job, Machine, ServerLinkSnapshot } from '../domain/model.ts';
import { defineTestDomain, type LibvirtTestDomain } from '../testing/libvirt-domain.fixture.ts';
import { ensureLibvirtd, type Libvirtd, libvirtMissing } from '../testing/libvirtd.fixture.ts';
import {
  buildPortal,
  type PortalFixture,
  screenshots,
  startPortalFixture,
  watchedPage,
} from '../testing/portal-fixture.ts';
import { until } from '../testing/until.ts';

const libvirtSkip = await libvirtMissing();
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-/;

/** A finished job as the engine leaves it, for a target no quick real operation reaches (a plan). */
function finishedJob(kind: string, targetType: Job['targetType'], targetId: string): Job {
  const now = new Date().toISOString();
  return {
    id: randomUUID(),
    kind,
    targetType,
    targetId,
    state: 'succeeded',
    progress: 100,
    input: {},
    output: {},
    createdBy: 'admin',
    createdAt: now,
    startedAt: now,
    finishedAt: now,
    error: null,
    cancelRequested: false,
    steps: [],
  };
}

/** A server as the vault keeps it once its primary host reported its link (no real server behind it). */
function storedServer(
  name: string,
  hostId: string,
  enrolledAt: string | null,
  link: ServerLinkSnapshot | null,
): Machine {
  const now = new Date().toISOString();
  return {
    id: randomUUID(),
    name,
    primaryHostId: hostId,
    recoveryHostId: null,
    activeHostId: hostId,
    policyId: null,
    groupId: null,
    osFamily: 'linux',
    state: 'unprotected',
    health: 'unknown',
    disks: ['disk0', 'disk1'].map((id, i) => ({
      id,
      sizeBytes: 1 << 30,
      source: `/dev/vd${'ab'[i]}`,
      serverDevice: `/dev/vd${'ab'[i]}`,
      hasSnapshots: false,
    })),
    recoverySettings: { targetName: name, cpus: 2, memoryMiB: 2048, nics: [] },
    currentJobId: null,
    replication: link && {
      state: 'streaming',
      progress: 100,
      rpoSeconds: 2,
      pendingBytes: 0,
      sentBytes: 0,
      throughputBytesPerSec: 0,
      lastError: link.problem,
      updatedAt: now,
      server: link,
    },
    runtime: { test: null, failover: null },
    originalExists: true,
    server: { writeBehind: null, nbdTimeoutSeconds: 30, enrolledAt },
    createdAt: now,
    updatedAt: now,
  };
}

describe('portal pages: hosts, sites, alerts, job targets', { timeout: 120_000 }, () => {
  let f: PortalFixture;
  let hosts: Host[];
  let viewerToken: string;
  let operatorToken: string;
  let machine: Machine;
  const consoleErrors: string[] = [];

  before(async () => {
    await buildPortal();
    f = await startPortalFixture({ demo: false });
    hosts = await until('both hosts to connect', async () => {
      const listed = (await f.api<{ hosts: Host[] }>('GET', '/hosts')).body.hosts;
      return listed.length === 2 && listed.every((h) => h.status === 'connected') ? listed : null;
    });
    viewerToken = (await f.api<{ token: string }>('POST', '/tokens', { name: 'auditor', role: 'viewer' }))
      .body.token;
    operatorToken = (await f.api<{ token: string }>('POST', '/tokens', { name: 'ops', role: 'operator' }))
      .body.token;
    const created = await f.api<Machine>('POST', '/machines', {
      name: 'db-1',
      hostId: hosts.find((h) => h.name === 'primary')!.id,
      disks: [{ id: 'disk0', sizeBytes: 1073741824, source: '/tmp/x.img' }],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    machine = created.body;
  });
  after(async () => {
    await f?.stop();
  });

  test('hosts: heartbeat as relative time, site, protected disks, free space, version; a host page', async () => {
    const page = await watchedPage(f, f.adminToken, consoleErrors);
    await page.goto(`${f.url}/hosts`);
    const row = page.locator('tr[data-host="recovery"]');
    await row.getByTestId('free-space').waitFor();
    const cells = (await row.locator('th, td').allInnerTexts()).map((t) => t.trim());
    const recovery = hosts.find((h) => h.name === 'recovery')!;
    assert.equal(cells[0], 'recovery');
    assert.equal(cells[1], 'recovery', 'the site by name');
    assert.equal(cells[2], 'connected');
    assert.match(cells[3]!, /^\d+ s ago$/);
    assert.equal(cells[4], `0 of ${recovery.maxProtectedDisks}`);
    // An admin sees no edit on the list: the limit is changed from the host's page.
    assert.equal(await row.getByRole('button').count(), 0);
    assert.match(cells[5]!, /^[\d.]+ [KMGT]iB free of [\d.]+ [KMGT]iB$/);
    assert.equal(cells[6], recovery.version);
    assert.doesNotMatch((await page.locator('main').textContent()) ?? '', UUID);
    await screenshots(f, page, 'pages-hosts');

    await row.getByRole('link', { name: 'recovery' }).first().click();
    await page.getByRole('heading', { name: /recovery/, level: 1 }).waitFor();
    await page.getByText(/ free of /).waitFor();
    await page.getByText('No machine uses this host.').waitFor();
    assert.equal(page.url(), `${f.url}/hosts/${recovery.id}`);
    // The built-in QEMU driver has no libvirt inventory: no domains card, no import.
    assert.equal(await page.getByRole('heading', { name: 'libvirt domains' }).count(), 0);
    await screenshots(f, page, 'pages-host');

    // An admin changes the protected-disk limit; a bad value is named at the field.
    await page.getByRole('button', { name: 'Change limit…' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel(/Protected disks at most/).fill('');
    await dialog.getByRole('button', { name: 'Save limit' }).click();
    await dialog
      .locator('[data-field="maxProtectedDisks"]')
      .getByText(/whole number/)
      .waitFor();
    await screenshots(f, page, 'pages-host-limit-problem');
    await dialog.getByLabel(/Protected disks at most/).fill('32');
    await dialog.getByRole('button', { name: 'Save limit' }).click();
    await page.getByTestId('protected-disks').getByText('0 of 32').waitFor();
    assert.equal((await f.api<Host>('GET', `/hosts/${recovery.id}`)).body.maxProtectedDisks, 32);

    await page.close();
    // An unknown host says so (the browser logs the 404, so not on a page watched for console errors).
    const missing = await f.newPage({ token: f.adminToken });
    await missing.goto(`${f.url}/hosts/primary-and-nothing-else`);
    await missing
      .getByRole('alert')
      .getByText(/host 'primary-and-nothing-else' does not exist/)
      .waitFor();
    await missing.close();
  });

  test('sites: an admin edits the network mapping and test network (problems at their fields); hosts, mapping, test network shown', async () => {
    const refusals: string[] = [];
    const editor = await watchedPage(f, f.adminToken, refusals);
    await editor.goto(`${f.url}/sites`);
    await editor.getByRole('button', { name: 'Edit site recovery…' }).click();
    const dialog = editor.getByRole('dialog');
    await dialog.getByRole('button', { name: 'Add mapping' }).click();
    await dialog.getByLabel('Network here').fill('dr-lan');
    await dialog.getByRole('button', { name: 'Save networks' }).click();
    // The form names the empty half of the row at its field, before asking the vault.
    await dialog
      .locator('[data-field="mapping.0.there"]')
      .getByText('Name the network dr-lan becomes')
      .waitFor();
    assert.equal(await dialog.getByLabel(/^At /).getAttribute('aria-invalid'), 'true');
    await screenshots(f, editor, 'pages-site-edit-problem');
    await dialog.getByLabel(/^At /).fill('lan');
    await dialog.getByLabel(/Test network/).fill('dr-bubble');
    await dialog.getByRole('button', { name: 'Save networks' }).click();
    await dialog.waitFor({ state: 'detached' });
    await editor.close();
    assert.deepEqual(refusals, []);

    const page = await watchedPage(f, f.adminToken, consoleErrors);
    await page.goto(`${f.url}/sites`);
    const card = page.locator('[data-site="recovery"]');
    await card.getByRole('link', { name: 'recovery' }).waitFor();
    const mapping = (await card.getByTestId('network-mapping').locator('td').allInnerTexts()).map((t) =>
      t.trim(),
    );
    assert.deepEqual(mapping, ['dr-lan', 'lan']);
    assert.equal((await card.getByTestId('test-network').textContent())?.trim(), 'dr-bubble');
    await page
      .locator('[data-site="primary"]')
      .getByText(/No network mapped/)
      .waitFor();
    await screenshots(f, page, 'pages-sites');
    // From a host's site link to its card.
    await page.goto(`${f.url}/hosts`);
    await page.locator('tr[data-host="recovery"]').getByRole('link', { name: 'recovery' }).nth(1).click();
    await page.locator('#site-recovery').waitFor();
    await page.close();
  });

  test('alerts: open ones name their subject, the navigation counts them, an operator acknowledges, closed ones show', async () => {
    const { store } = f.haven.vault.context;
    const recovery = hosts.find((h) => h.name === 'recovery')!;
    const raise = (
      key: string,
      subjectType: Alert['subjectType'],
      subjectId: string | null,
      message: string,
    ) =>
      store.alerts.raise({
        id: randomUUID(),
        key,
        severity: 'critical',
        message,
        subjectType,
        subjectId,
        raisedAt: new Date().toISOString(),
        clearedAt: null,
      });
    await raise(`rpo:${machine.id}`, 'machine', machine.id, 'db-1 is 20 min behind its RPO of 15 min');
    await raise(`host-unreachable:${recovery.id}`, 'host', recovery.id, "Host 'recovery' missed heartbeats");

    const page = await watchedPage(f, operatorToken, consoleErrors);
    await page.goto(`${f.url}/alerts`);
    await page.getByTestId('alert-count').getByText('2').waitFor();
    const machineRow = page.locator(`tr[data-alert="rpo:${machine.id}"]`);
    const link = machineRow.getByRole('link', { name: 'db-1' });
    await link.waitFor();
    assert.equal(await link.getAttribute('href'), `/machines/${machine.id}`);
    const hostLink = page.locator(`tr[data-alert="host-unreachable:${recovery.id}"]`).getByRole('link');
    assert.equal(await hostLink.textContent(), 'recovery');
    assert.equal(await hostLink.getAttribute('href'), `/hosts/${recovery.id}`);
    assert.doesNotMatch((await page.locator('main').textContent()) ?? '', UUID);
    await screenshots(f, page, 'pages-alerts');

    await machineRow.getByRole('button', { name: 'Acknowledge' }).click();
    await machineRow.getByText(/acknowledged by ops/).waitFor();
    await page.getByTestId('alert-count').getByText('1').waitFor({ timeout: 3000 });
    const stored = (await f.api<{ alerts: Alert[] }>('GET', '/alerts?open=true')).body.alerts;
    assert.equal(stored.find((a) => a.subjectId === machine.id)?.acknowledged?.by, 'ops');

    await store.alerts.clear(`host-unreachable:${recovery.id}`, new Date().toISOString());
    await page.getByLabel('closed').check();
    await page
      .locator(`tr[data-alert="host-unreachable:${recovery.id}"]`)
      .getByText(/cleared .* ago/)
      .waitFor();
    assert.equal(
      await page.locator(`tr[data-alert="rpo:${machine.id}"]`).count(),
      0,
      'open alerts not listed',
    );
    assert.equal(await page.getByRole('button', { name: 'Acknowledge' }).count(), 0);
    await screenshots(f, page, 'pages-alerts-closed');
    await page.close();
  });

  test('jobs name their machine or plan and link to it, on the jobs list, a job page and the dashboard', async () => {
    const plan = await f.api<{ id: string }>('POST', '/plans', {
      name: 'billing',
      groups: [{ name: 'db', machines: ['db-1'] }],
    });
    assert.equal(plan.status, 201, JSON.stringify(plan.body));
    const { store } = f.haven.vault.context;
    const planJob = finishedJob('plan-test-failover', 'plan', plan.body.id);
    const machineJob = finishedJob('enable-replication', 'machine', machine.id);
    await store.jobs.create(machineJob);
    await store.jobs.create(planJob);
    const backup = await f.api<{ id: string }>('POST', '/vault/backup', {});
    assert.equal(backup.status, 202);

    const page = await watchedPage(f, f.adminToken, consoleErrors);
    await page.goto(`${f.url}/jobs`);
    const planLink = page.getByRole('link', { name: 'billing' });
    await planLink.waitFor();
    assert.equal(await planLink.getAttribute('href'), `/plans/${plan.body.id}`);
    const machineLinks = page.getByRole('link', { name: 'db-1' });
    assert.equal(await machineLinks.first().getAttribute('href'), `/machines/${machine.id}`);
    await page.getByText('the vault').first().waitFor();
    assert.doesNotMatch((await page.locator('main').textContent()) ?? '', UUID);
    await screenshots(f, page, 'pages-jobs');

    await page.goto(`${f.url}/jobs/${planJob.id}`);
    await page.locator('.facts').getByRole('link', { name: 'billing' }).waitFor();
    await page.goto(`${f.url}/jobs/${machineJob.id}`);
    await page.locator('.facts').getByRole('link', { name: 'db-1' }).click();
    await page.getByRole('heading', { name: /db-1/ }).waitFor();

    await page.goto(f.url);
    await page.getByRole('heading', { name: 'Recent jobs' }).waitFor();
    const recent = page.locator('article', { has: page.getByRole('heading', { name: 'Recent jobs' }) });
    await recent.getByRole('link', { name: 'billing' }).waitFor();
    await recent.getByRole('link', { name: 'db-1' }).waitFor();
    assert.doesNotMatch((await recent.textContent()) ?? '', UUID);
    await page.close();
  });

  test('servers: the list in words, Add server (a bad field at its field, then the commands once or the host refused at its field), the server link panel', async () => {
    const primary = hosts.find((h) => h.name === 'primary')!;
    const servesServers = primary.capabilities.includes('server-link');
    const { store } = f.haven.vault.context;
    const minuteAgo = new Date(Date.now() - 60_000).toISOString();
    const agent = (legs: string, action: 'idle' | 'recovery') => ({
      receivedAt: minuteAgo,
      hostname: 'srv-degraded.example',
      agentVersion: '1.0.0',
      stopping: false,
      disks: [
        {
          diskId: 'disk0',
          array: '/dev/md0',
          legs: '[UU]',
          action: 'idle' as const,
          progressPercent: null,
          bitmapDirtyChunks: 0,
        },
        { diskId: 'disk1', array: '/dev/md1', legs, action, progressPercent: null, bitmapDirtyChunks: 17 },
      ],
    });
    const leg = (diskId: string, over: object = {}) => ({
      diskId,
      sizeBytes: 1 << 30,
      connected: true,
      md: 'in-sync' as const,
      syncedBytes: null,
      pointsAllowed: true,
      lastWriteAt: minuteAgo,
      ...over,
    });
    const degraded = storedServer('srv-degraded', primary.id, minuteAgo, {
      state: 'degraded',
      legs: [leg('disk0'), leg('disk1', { connected: false, pointsAllowed: false })],
      agent: agent('[U_]', 'recovery'),
      problem: 'leg disk1 disconnected 40 s ago',
    });
    const syncing = storedServer('srv-syncing', primary.id, minuteAgo, {
      state: 'syncing',
      legs: [
        leg('disk0'),
        leg('disk1', { md: 'resyncing', syncedBytes: 0.45 * (1 << 30), pointsAllowed: false }),
      ],
      agent: null,
      problem: null,
    });
    const inSync = storedServer('srv-in-sync', primary.id, minuteAgo, {
      state: 'in-sync',
      legs: [leg('disk0'), leg('disk1')],
      agent: agent('[UU]', 'idle'),
      problem: null,
    });
    for (const m of [degraded, syncing, inSync]) {
      await store.machines.create(m);
      await store.machines.recordReplication(m.id, m.replication, m === inSync ? 'healthy' : 'critical');
    }

    // Refusals this test provokes are logged by the browser; anything else is an error.
    const logged: string[] = [];
    const page = await watchedPage(f, operatorToken, logged);
    await page.goto(`${f.url}/machines`);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Servers' }).click();
    const table = page.getByTestId('servers-table');
    await table.waitFor();
    const linkOf = (name: string) => table.locator(`tr[data-server="${name}"] [data-testid="server-link"]`);
    await linkOf('srv-degraded')
      .getByText(/degraded: the NBD leg of disk1 is out/)
      .waitFor();
    await linkOf('srv-syncing').getByText('disk1 md resync 45%').waitFor();
    await linkOf('srv-in-sync').getByText('in sync (2 legs)').waitFor();
    // Green only where the host says in sync.
    for (const [name, green] of [
      ['srv-degraded', 0],
      ['srv-syncing', 0],
      ['srv-in-sync', 1],
    ] as const) {
      assert.equal(await linkOf(name).locator('.health-healthy').count(), green, name);
    }
    assert.match(
      (
        (await table.locator('tr[data-server="srv-degraded"] [data-testid="last-report"]').textContent()) ??
        ''
      ).trim(),
      /ago$/,
    );
    await screenshots(f, page, 'pages-servers');

    // Add server: the write-behind warning where it is chosen; a bad device refused by the API at its field.
    await page.getByRole('button', { name: 'Add server…' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Name', { exact: true }).fill('web-01');
    await dialog.getByLabel('Device').fill('sda');
    await dialog.getByLabel('Size').fill('64M');
    await dialog.getByRole('button', { name: 'Add disk' }).click();
    await dialog.getByLabel('Device').nth(1).fill('/dev/vdb');
    await dialog.getByLabel('Size').nth(1).fill('32M');
    await dialog.getByLabel('Write-behind, for a slow link').check();
    await dialog
      .getByTestId('write-behind-warning')
      .getByText(/Weaker ordering/)
      .waitFor();
    await dialog.getByLabel('Network (optional)').fill('lan');
    await screenshots(f, page, 'pages-servers-add-write-behind');
    await dialog.getByRole('button', { name: 'Remove disk 2' }).click();
    await dialog.getByLabel(/^Synchronous/).check();
    assert.equal(await dialog.getByTestId('write-behind-warning').count(), 0);
    // Its BMC, optional: a URL Haven cannot use and a missing password are named at their fields.
    await dialog.getByLabel('IPMI address').fill('redfish://haven@bmc-web-01');
    await dialog.getByRole('button', { name: 'Add server' }).click();
    await dialog
      .locator('[data-field="bmc"]')
      .getByText(/only ipmi is supported/)
      .waitFor();
    await dialog
      .locator('[data-field="bmc.password"]')
      .getByText(/password/)
      .waitFor();
    await dialog.getByLabel('IPMI address').fill('ipmi://haven@10.0.9.21');
    await dialog.getByLabel('Password').fill('bmc-secret-web-01');
    await dialog.getByRole('button', { name: 'Add server' }).click();
    await dialog
      .locator('[data-field="disks.0.device"]')
      .getByText(/absolute block device path/)
      .waitFor();
    assert.equal(await dialog.getByLabel('Device').getAttribute('aria-invalid'), 'true');
    await screenshots(f, page, 'pages-servers-add-refused');

    await dialog.getByLabel('Device').fill('/dev/vda');
    await dialog.getByRole('button', { name: 'Add server' }).click();
    if (servesServers) {
      // The commands show once, with the token's expiry, and copy to the clipboard.
      const commands = dialog.getByTestId('server-commands');
      await commands.waitFor();
      const text = (await commands.getByTestId('commands-text').textContent()) ?? '';
      const token = /--token (\S+)/.exec(text)?.[1];
      assert.ok(token, text);
      assert.match(text, /haven-server-agent enrol --agent /);
      assert.match(text, /BEGIN CERTIFICATE/);
      await commands.getByTestId('token-expiry').waitFor();
      await f.browser.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: f.url });
      await commands.getByRole('button', { name: 'Copy commands' }).click();
      await commands.getByText('Copied.').waitFor();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), text);
      await screenshots(f, page, 'pages-servers-commands');
      await dialog.getByRole('button', { name: 'Done' }).click();
      await linkOf('web-01').getByText('awaiting enrolment').waitFor();
      const added = (await f.api<{ servers: Machine[] }>('GET', '/servers')).body.servers.find(
        (m) => m.name === 'web-01',
      );
      assert.deepEqual(added?.server?.bmc, {
        protocol: 'ipmi',
        address: '10.0.9.21',
        port: 623,
        user: 'haven',
        cipherSuite: null,
      });
      assert.ok(!JSON.stringify(added).includes('bmc-secret-web-01'), 'the password is never shown back');
      assert.doesNotMatch((await page.locator('main').textContent()) ?? '', new RegExp(token));
      // New enrolment gives new commands with another token.
      await table.locator('tr[data-server="web-01"]').getByRole('button', { name: 'New enrolment…' }).click();
      await dialog.getByRole('button', { name: 'Issue new enrolment' }).click();
      const again = (await dialog.getByTestId('commands-text').textContent()) ?? '';
      assert.notEqual(/--token (\S+)/.exec(again)?.[1], token);
      await dialog.getByRole('button', { name: 'Done' }).click();
    } else {
      // This host serves no physical servers: the vault's refusal names it at the host field.
      await dialog
        .locator('[data-field="hostId"]')
        .getByText(/host 'primary' does not serve physical servers/)
        .waitFor();
      await screenshots(f, page, 'pages-servers-add-host-refused');
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      assert.equal((await f.api<{ servers: Machine[] }>('GET', '/servers')).body.servers.length, 3);
    }
    await dialog.waitFor({ state: 'detached' });

    // The machine page of a server: its kind, the link panel with each leg and the agent's report.
    await table.getByRole('link', { name: 'srv-degraded' }).click();
    const panel = page.getByTestId('server-link-panel');
    await panel.waitFor();
    assert.equal(await page.getByTestId('machine-kind').textContent(), 'physical server');
    assert.equal(await panel.getAttribute('data-link-state'), 'degraded');
    await panel.getByText('leg disk1 disconnected 40 s ago').waitFor();
    const disk1 = panel.locator('[data-testid="server-legs"] tr[data-leg="disk1"] td');
    assert.deepEqual((await disk1.allInnerTexts()).map((t) => t.trim()).slice(0, 2), ['no', 'in sync']);
    const array1 = panel.locator('[data-testid="server-arrays"] tr[data-array="disk1"] td');
    const cells = (await array1.allInnerTexts()).map((t) => t.trim());
    assert.deepEqual(cells, ['/dev/md1', '[U_] (the NBD leg out)', 'recovery', '—', '17']);
    await panel.getByText('srv-degraded.example').waitFor();
    await panel.getByRole('button', { name: 'New enrolment…' }).waitFor();
    await screenshots(f, page, 'pages-server-machine');
    await page.goto(`${f.url}/machines/${syncing.id}`);
    await panel.locator('[data-testid="server-legs"] tr[data-leg="disk1"] progress').waitFor();
    await panel.getByText("No report from the server's agent yet.").waitFor();
    await page.close();
    const unexpected = logged.filter((e) => !/Failed to load resource: .* status of (400|409) /.test(e));
    assert.deepEqual(unexpected, []);
    assert.ok(logged.length > 0, 'the refusals were logged (the test provoked them)');

    // A viewer sees the servers and their link, and no action (the charts' view buttons are no action).
    const viewer = await watchedPage(f, viewerToken, consoleErrors);
    await viewer.goto(`${f.url}/servers`);
    await viewer.getByTestId('servers-table').locator('tr[data-server="srv-degraded"]').waitFor();
    await viewer.waitForLoadState('networkidle');
    assert.deepEqual(await viewer.locator('main button').allInnerTexts(), []);
    await viewer.goto(`${f.url}/machines/${degraded.id}`);
    await viewer.getByTestId('server-legs').waitFor();
    await viewer.waitForLoadState('networkidle');
    assert.deepEqual(await viewer.getByTestId('server-link-panel').locator('button').allInnerTexts(), []);
    assert.equal(await viewer.locator('fieldset.actions').count(), 0);
    await viewer.close();
  });

  test('a viewer sees every page but no action', async () => {
    const page = await watchedPage(f, viewerToken, consoleErrors);
    await page.goto(`${f.url}/alerts`);
    await page.getByRole('heading', { name: 'Alerts' }).waitFor();
    await page
      .locator(`tr[data-alert="rpo:${machine.id}"]`)
      .getByText(/acknowledged by ops/)
      .waitFor();
    assert.equal(await page.getByRole('button', { name: 'Acknowledge' }).count(), 0);
    await f.screenshot(page, 'pages-alerts-viewer');
    for (const path of ['/hosts', `/hosts/${hosts[0]!.id}`, '/sites', '/jobs']) {
      await page.goto(`${f.url}${path}`);
      await page.locator('main h1').waitFor();
      await page.waitForLoadState('networkidle');
      const buttons = await page.locator('main button').allInnerTexts();
      assert.deepEqual(buttons, [], `${path} shows a viewer ${buttons.join(', ')}`);
    }
    await page.close();
    // Sites and host limits are an admin's: an operator sees no edit either.
    const operator = await watchedPage(f, operatorToken, consoleErrors);
    for (const path of [`/hosts/${hosts[0]!.id}`, '/sites']) {
      await operator.goto(`${f.url}${path}`);
      await operator.locator('main h1').waitFor();
      await operator.waitForLoadState('networkidle');
      const buttons = await operator.locator('main button').allInnerTexts();
      assert.deepEqual(buttons, [], `${path} shows an operator ${buttons.join(', ')}`);
    }
    await operator.close();
  });

  test('no request left the vault, no page error, no console error', () => {
    assert.deepEqual(f.foreignRequests, []);
    assert.deepEqual(f.pageErrors, []);
    assert.deepEqual(consoleErrors, []);
  });
});

/** A libvirt host's page lists its domains; an operator imports one from there, a viewer cannot. */
describe('portal pages: a libvirt host', { skip: libvirtSkip, timeout: 90_000 }, () => {
  let f: PortalFixture;
  let libvirtd: Libvirtd;
  let domain: LibvirtTestDomain;
  let primary: Host;
  const domainName = `haven-pages-${process.pid}`;
  const consoleErrors: string[] = [];

  before(async () => {
    libvirtd = await ensureLibvirtd();
    domain = await defineTestDomain(libvirtd.uri, domainName);
    await buildPortal();
    f = await startPortalFixture({ libvirt: { uri: libvirtd.uri }, demo: false });
    primary = await until(
      'the primary host to connect and report libvirt',
      async () => {
        const listed = (await f.api<{ hosts: Host[] }>('GET', '/hosts')).body.hosts;
        return listed.find(
          (h) =>
            h.name === 'primary' && h.status === 'connected' && h.capabilities.includes('hypervisor:libvirt'),
        );
      },
      { timeoutMs: 30_000 },
    );
  });
  after(async () => {
    await f?.stop();
    await domain?.remove();
    await libvirtd?.stop();
  });

  test('a viewer sees the inventory without an import action', async () => {
    const viewer = (await f.api<{ token: string }>('POST', '/tokens', { name: 'auditor', role: 'viewer' }))
      .body.token;
    const page = await watchedPage(f, viewer, consoleErrors);
    await page.goto(`${f.url}/hosts/${primary.id}`);
    const row = page.getByTestId('inventory').locator(`tr[data-domain="${domainName}"]`);
    await row.getByText('not imported').waitFor();
    assert.equal(await page.locator('main button').count(), 0);
    await page.close();
  });

  test("an operator imports a domain from the host's inventory", async () => {
    const operator = (await f.api<{ token: string }>('POST', '/tokens', { name: 'ops', role: 'operator' }))
      .body.token;
    const page = await watchedPage(f, operator, consoleErrors);
    await page.goto(`${f.url}/hosts/${primary.id}`);
    const row = page.getByTestId('inventory').locator(`tr[data-domain="${domainName}"]`);
    await row.waitFor();
    const cells = (await row.locator('th, td').allInnerTexts()).map((t) => t.trim());
    assert.deepEqual(cells.slice(0, 5), [domainName, 'shut-off', '1', '128 MiB', '1']);
    await screenshots(f, page, 'pages-host-libvirt');
    await row.getByRole('button', { name: `Import ${domainName}…` }).click();
    const dialog = page.getByRole('dialog');
    assert.equal(await dialog.getByLabel(domainName).isChecked(), true, 'the domain is picked already');
    await dialog.getByLabel('Haven name (optional)').fill('from-host-page');
    await dialog.getByRole('button', { name: 'Import', exact: true }).click();
    await page.getByRole('heading', { name: /from-host-page/ }).waitFor();
    // Back on the host page the domain links to the machine it became.
    await page.goBack();
    await row.getByRole('link', { name: 'from-host-page' }).waitFor();
    await page.close();
  });

  test('no request left the vault, no page error, no console error', () => {
    assert.deepEqual(f.foreignRequests, []);
    assert.deepEqual(f.pageErrors, []);
    assert.deepEqual(consoleErrors, []);
  });
});
