import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { type Host, type Job, type Machine, pendingStep, type RecoveryPoint } from '../domain/model.ts';
import {
  buildPortal,
  type PortalFixture,
  screenshots,
  startPortalFixture,
  watchedPage,
} from '../testing/portal-fixture.ts';
import { until } from '../testing/until.ts';

const MINUTE = 60_000;

/**
 * The machine page's timeline and point picker, and the job page, against a
 * real vault in Chromium. The machine's points are written to the vault's
 * store (it keeps them while no replica host holds the machine): hundreds of
 * them, with a gap, and new ones arriving while the tests click.
 */
describe('portal: the machine page and the job page', { timeout: 180_000 }, () => {
  let f: PortalFixture;
  let machine: Machine;
  let viewerToken: string;
  let sequence = 0;
  let arriving: ReturnType<typeof setInterval> | undefined;
  const consoleErrors: string[] = [];
  const points: RecoveryPoint[] = [];

  async function addPoint(at: number, kind: 'crash' | 'app' | 'group'): Promise<RecoveryPoint> {
    sequence += 1;
    const point: RecoveryPoint = {
      id: `${machine.id}@${sequence}`,
      machineId: machine.id,
      time: new Date(at).toISOString(),
      sequence,
      type: kind === 'app' ? 'app-consistent' : 'crash-consistent',
      groupPointId: kind === 'group' ? `g-${sequence}` : null,
      processed: true,
      sizeBytes: 65_536,
    };
    await f.haven.vault.context.store.recoveryPoints.add(point);
    points.push(point);
    return point;
  }

  before(async () => {
    await buildPortal();
    f = await startPortalFixture({ demo: false });
    const hosts = await until('both hosts to connect', async () => {
      const listed = (await f.api<{ hosts: Host[] }>('GET', '/hosts')).body.hosts;
      return listed.length === 2 && listed.every((h) => h.status === 'connected') ? listed : null;
    });
    const created = await f.api<Machine>('POST', '/machines', {
      name: 'web-1',
      hostId: hosts.find((h) => h.name === 'primary')!.id,
      disks: [{ id: 'disk0', sizeBytes: 1073741824, source: '/tmp/web-1.img' }],
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    machine = created.body;
    // Protected with its points at the vault: the failover dialog is offered, the points come from the store.
    const { store } = f.haven.vault.context;
    await store.machines.transition(machine.id, 'unprotected', 'protected', null, machine.updatedAt);
    // Six hours ago to four hours ago every 2 minutes, nothing for three hours, then every 30 s.
    const now = Date.now();
    for (let t = now - 360 * MINUTE; t < now - 240 * MINUTE; t += 2 * MINUTE) {
      const i = points.length;
      await addPoint(t, i % 10 === 0 ? 'app' : i % 25 === 3 ? 'group' : 'crash');
    }
    for (let t = now - 60 * MINUTE; t < now; t += 30_000) {
      const i = points.length;
      await addPoint(t, i % 10 === 0 ? 'app' : i % 25 === 3 ? 'group' : 'crash');
    }
    // Replication figures the vault kept before any page opened: every 10 s over the last 50 minutes.
    await store.machines.recordReplication(
      machine.id,
      {
        state: 'streaming',
        progress: 100,
        rpoSeconds: 4,
        pendingBytes: 1 << 20,
        sentBytes: 1 << 30,
        throughputBytesPerSec: 7 << 20,
        lastError: null,
        updatedAt: new Date(now).toISOString(),
      },
      'healthy',
    );
    for (let t = now - 50 * MINUTE; t < now; t += 10_000) {
      await store.replicationHistory.record(machine.id, {
        at: new Date(t).toISOString(),
        throughputBytesPerSec: 7 << 20,
        pendingBytes: 1 << 20,
        rpoSeconds: 4,
      });
    }
    viewerToken = (await f.api<{ token: string }>('POST', '/tokens', { name: 'auditor', role: 'viewer' }))
      .body.token;
  });
  after(async () => {
    clearInterval(arriving);
    await f?.stop();
  });

  /** Points in view on the chart, summed over its marks (a cluster counts its points). */
  const inView = (page: Page) =>
    page.locator('.point').evaluateAll((marks) => marks.reduce((n, m) => n + Number(m.dataset.count), 0));

  test('the timeline: a point clicked while new points keep arriving is the one chosen', async () => {
    // A new point every 200 ms, for the whole test; the page polls every 5 s.
    arriving = setInterval(() => void addPoint(Date.now(), 'crash'), 200);
    const page = await watchedPage(f, f.adminToken, consoleErrors);
    await page.goto(`${f.url}/machines/${machine.id}`);
    await page.getByRole('heading', { name: /web-1/ }).waitFor();
    const marks = page.locator('.point');
    await marks.first().waitFor();
    // Thinned: hundreds of points, far fewer marks; clusters say how many they hold.
    const shownMarks = await marks.count();
    assert.ok(shownMarks < points.length / 3, `${shownMarks} marks for ${points.length} points`);
    assert.ok((await page.locator('.point.cluster').count()) > 0);

    // Wait for a refresh that brought new points, so the page is live when the pointer arrives.
    const before = (await page.locator('.timeline [role="listbox"]').getAttribute('aria-label'))!;
    await until('new points on the page', async () => {
      const now = await page.locator('.timeline [role="listbox"]').getAttribute('aria-label');
      return now !== before;
    });
    // Zoom in until single points show (a cluster zooms in when clicked), then click one with the pointer.
    for (let i = 0; i < 8 && (await page.locator('.point[data-count="1"]').count()) < 5; i++) {
      await page.getByRole('button', { name: 'Zoom in' }).click();
      assert.ok((await inView(page)) > 0, 'zoom landed on an empty range');
    }
    const target = page.locator('.point[data-count="1"]').nth(2);
    const id = await target.getAttribute('data-point-id');
    assert.ok(id);
    await target.hover();
    await page.getByTestId('timeline-held').waitFor();
    // Hold the pointer over the chart across a refresh: nothing moves, the new points are counted.
    const box = await target.boundingBox();
    await page
      .getByTestId('timeline-held')
      .getByText(/new points? not drawn yet/)
      .waitFor({ timeout: 15_000 });
    assert.deepEqual(await target.boundingBox(), box, 'the point moved under the pointer');
    await target.click();
    await page.locator('.point.selected').waitFor();
    assert.equal(await page.locator('.point.selected').getAttribute('data-point-id'), id);
    const chosenText = (await page.getByTestId('chosen-point').textContent()) ?? '';
    assert.match(chosenText, /Chosen: /);
    // The chosen point, opened or copied outside the portal: the commands name it.
    const access = page.getByTestId('point-access');
    await access.locator('summary').click();
    const commands = (await access.locator('pre').textContent()) ?? '';
    const pointId = id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    assert.match(commands, new RegExp(`^haven view \\S+ --point ${pointId}$`, 'm'));
    assert.match(commands, new RegExp(`^haven export \\S+ --point ${pointId} --out \\S+\\.raw$`, 'm'));
    await screenshots(f, page, 'machine-point-access');

    // Leaving the chart draws the new points again.
    await page.mouse.move(0, 0);
    await page.getByTestId('timeline-held').waitFor({ state: 'detached' });

    // The chosen point is the failover dialog's custom point, in a picker grouped by kind.
    await page.getByRole('button', { name: 'Failover…', exact: true }).click();
    const dialog = page.getByRole('dialog');
    assert.equal(await dialog.getByLabel('Custom').isChecked(), true);
    const picker = dialog.getByTestId('point-picker');
    const legends = await picker.locator('legend').allInnerTexts();
    assert.deepEqual(
      legends.map((l) => l.replace(/\s*\(\d+\)$/, '')),
      ['App-consistent', 'Multi-machine (group)', 'Crash-consistent'],
    );
    const radios = picker.locator('input[type="radio"]');
    assert.ok((await radios.count()) <= 3 * 7, 'not hundreds of points flat');
    assert.equal(await picker.locator(`input[value="${id}"]`).isChecked(), true);
    await screenshots(f, page, 'machine-point-picker');
    // Search by time: the points nearest five hours ago (in the older stretch) are offered.
    const fiveHoursAgo = new Date(Date.now() - 300 * MINUTE);
    const local = new Date(fiveHoursAgo.getTime() - fiveHoursAgo.getTimezoneOffset() * MINUTE)
      .toISOString()
      .slice(0, 19);
    await picker.getByLabel('Closest to').fill(local);
    const crash = picker.locator('[data-kind="crash"] input[type="radio"]');
    const offered = await crash.evaluateAll((inputs) => inputs.map((i) => (i as HTMLInputElement).value));
    const near = offered
      .map((v) => points.find((p) => p.id === v)!)
      .filter((p) => p.id !== id)
      .map((p) => Math.abs(Date.parse(p.time) - fiveHoursAgo.getTime()));
    assert.ok(
      near.length > 0 && near.every((d) => d < 15 * MINUTE),
      `offered ${near.map((d) => d / MINUTE)}`,
    );
    await crash.first().check();
    await picker.getByRole('button', { name: 'Newest' }).click();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await page.close();
  });

  test('the timeline by keyboard: arrows move between points, Enter chooses; zoom and pan never show nothing', async () => {
    const page = await watchedPage(f, f.adminToken, consoleErrors);
    await page.goto(`${f.url}/machines/${machine.id}`);
    await page.locator('.point').first().waitFor();
    // Pan back across the three empty hours: every step shows points.
    for (let i = 0; i < 6; i++) {
      await page.getByRole('button', { name: 'Zoom in' }).click();
      assert.ok((await inView(page)) > 0, `zoom in ${i}: empty`);
    }
    for (let i = 0; i < 12; i++) {
      await page.getByRole('button', { name: 'Earlier' }).click();
      assert.ok((await inView(page)) > 0, `pan ${i}: empty`);
    }
    await page.getByRole('button', { name: 'All points' }).click();

    // Tab reaches the chart (one mark is in the tab order); arrows move focus from mark to mark.
    await page.locator('.point[tabindex="0"]').focus();
    const focused = () => page.evaluate(() => document.activeElement?.id ?? '');
    const first = await focused();
    assert.match(first, /^mark-/);
    await page.keyboard.press('ArrowLeft');
    assert.notEqual(await focused(), first);
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Home');
    // Enter on a cluster zooms into it; keep going until a single point is focused, then Enter chooses it.
    for (let i = 0; i < 10; i++) {
      const count = await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.count);
      if (count === '1') break;
      await page.keyboard.press('Enter');
      await page.waitForFunction(() => document.activeElement?.classList.contains('point'));
    }
    const id = await page.evaluate(() => (document.activeElement as HTMLElement).dataset.pointId);
    assert.ok(id, 'a single point has focus');
    await page.keyboard.press('Enter');
    assert.equal(await page.locator('.point.selected').getAttribute('data-point-id'), id);
    await screenshots(f, page, 'machine-timeline');
    await page.close();
  });

  test('the replication charts: history kept by the vault from before the page opened, updated live', async () => {
    const page = await watchedPage(f, f.adminToken, consoleErrors);
    await page.goto(`${f.url}/machines/${machine.id}`);
    const throughput = page.getByTestId('spark-throughput');
    await throughput.waitFor();
    const samples = Number(await throughput.getAttribute('data-samples'));
    assert.ok(samples >= 290, `${samples} samples from the last 50 minutes`);
    assert.match((await throughput.locator('figcaption').textContent()) ?? '', /highest 7\.0 MiB\/s/);
    assert.ok((await throughput.locator('polyline').count()) >= 1, 'drawn as a line');
    // A new figure reaches the open page (pending is each sample's worst: the monitor's own figures do not hide it).
    await f.haven.vault.context.store.replicationHistory.record(machine.id, {
      at: new Date().toISOString(),
      throughputBytesPerSec: 0,
      pendingBytes: 5 * 2 ** 30,
      rpoSeconds: 2,
    });
    await page
      .getByTestId('spark-pending')
      .locator('figcaption', { hasText: /highest 5\.0 GiB/ })
      .waitFor({ timeout: 15_000 });
    // The day: the vault's 1 min samples.
    await page.getByRole('button', { name: 'Last day' }).click();
    await page
      .getByTestId('replication-history')
      .getByText(/samples? of 1 min over the last day/)
      .waitFor();
    await page.getByTestId('replication-history').scrollIntoViewIfNeeded();
    await screenshots(f, page, 'machine-replication-history');
    await page.close();
  });

  test('the timeline: the mouse wheel zooms the chart and does not scroll the page', async () => {
    const page = await watchedPage(f, f.adminToken, consoleErrors);
    await page.goto(`${f.url}/machines/${machine.id}`);
    await page.locator('.point').first().waitFor();
    await page.getByRole('button', { name: 'Zoom in' }).click();
    const chart = page.locator('.timeline-svg');
    await chart.scrollIntoViewIfNeeded();
    // Room to scroll either way, so a scroll would show.
    await page.evaluate(() => window.scrollBy(0, 40));
    const scroll = () => page.evaluate(() => window.scrollY);
    const range = page.getByTestId('timeline-range');
    const box = (await chart.boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    for (const deltaY of [400, -400]) {
      const before = { scroll: await scroll(), range: await range.textContent() };
      assert.ok(before.scroll > 0, 'the page can scroll both ways');
      await page.mouse.wheel(0, deltaY);
      await until('the wheel zoomed', async () => (await range.textContent()) !== before.range);
      // A scroll would have happened by now: wheel events are handled before the next frame.
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      assert.equal(await scroll(), before.scroll, `wheel ${deltaY} scrolled the page`);
    }
    await page.close();
  });

  test('the job page of a job from before steps kept their output: step durations, results in words, the recovery point named', async () => {
    const { store } = f.haven.vault.context;
    const point = points[points.length - 10]!;
    const at = (secondsAgo: number) => new Date(Date.now() - secondsAgo * 1000).toISOString();
    const job: Job = {
      id: randomUUID(),
      kind: 'change-recovery-point',
      targetType: 'machine',
      targetId: machine.id,
      state: 'succeeded',
      progress: 100,
      input: { recoveryPoint: { option: 'custom', pointId: point.id } },
      output: {
        recoveryPoint: { id: point.id, time: point.time, type: point.type, option: 'custom' },
        machineUp: { at: at(3), seconds: 4.2 },
        drillConsoleTail: ['boot: ok', 'durable 12'],
      },
      createdBy: 'admin',
      createdAt: at(30),
      startedAt: at(30),
      finishedAt: at(2),
      error: null,
      cancelRequested: false,
      steps: [
        {
          index: 0,
          name: 'choose-point',
          title: 'Choose the recovery point',
          state: 'succeeded',
          progress: 100,
          message: null,
          startedAt: at(30),
          finishedAt: at(28),
          error: null,
          output: null,
        },
        {
          index: 1,
          name: 'restart-from-point',
          title: 'Restart the recovery machine from the new point',
          state: 'succeeded',
          progress: 100,
          message: 'started',
          startedAt: at(28),
          finishedAt: at(2),
          error: null,
          output: null,
        },
      ],
    };
    await store.jobs.create(job);
    const page = await watchedPage(f, f.adminToken, consoleErrors);
    await page.goto(`${f.url}/jobs/${job.id}`);
    await page.locator('[data-job-state="succeeded"]').waitFor();
    const durations = await page.getByTestId('step-duration').allInnerTexts();
    assert.deepEqual(durations, ['took 2 s', 'took 26 s']);
    assert.match((await page.getByTestId('job-duration').textContent()) ?? '', /^took 28 s$/);
    const named = (await page.getByTestId('job-point').textContent()) ?? '';
    assert.match(named, /crash-consistent \(custom\)$/);
    assert.doesNotMatch(named, /@/, 'the point by its time, not its id');
    const output = page.getByTestId('job-output');
    assert.equal(await output.locator('pre').count(), 1, 'only the console tail as lines');
    assert.doesNotMatch((await output.textContent()) ?? '', /[{}"]/, 'no JSON');
    await output.locator('[data-output="seconds"]', { hasText: /^4 s$/ }).waitFor();
    await screenshots(f, page, 'job-change-point');

    // A viewer: the same page, no action.
    const viewer = await watchedPage(f, viewerToken, consoleErrors);
    await viewer.goto(`${f.url}/jobs/${job.id}`);
    await viewer.getByTestId('job-point').waitFor();
    assert.equal(await viewer.locator('main button').count(), 0);
    await viewer.goto(`${f.url}/machines/${machine.id}`);
    await viewer.locator('.point').first().waitFor();
    await viewer.waitForLoadState('networkidle');
    const buttons = await viewer.locator('main button').allInnerTexts();
    assert.deepEqual(
      buttons.filter((b) => !/Earlier|Later|Zoom|All points|^Last /.test(b)),
      [],
      'only the view buttons of the timeline and the charts',
    );
    assert.equal(await viewer.locator('button[data-operation]').count(), 0);
    await viewer.locator('.point').first().click();
    await viewer.locator('.point.selected').waitFor();
    assert.equal(await viewer.getByTestId('point-access').count(), 0, 'no export commands for a viewer');
    await screenshots(f, viewer, 'machine-viewer');
    await viewer.close();
    await page.close();
  });

  test("the job page: each step's output under it, and a failover's point changed since", async () => {
    const { store } = f.haven.vault.context;
    const chosen = points[points.length - 20]!;
    const later = points[points.length - 5]!;
    const at = (secondsAgo: number) => new Date(Date.now() - secondsAgo * 1000).toISOString();
    const step = (index: number, name: string, title: string, output: Record<string, unknown>) => ({
      ...pendingStep(index, name, title),
      state: 'succeeded' as const,
      progress: 100,
      startedAt: at(60 - index * 10),
      finishedAt: at(50 - index * 10),
      output,
    });
    const recoveryPoint = { id: chosen.id, time: chosen.time, type: chosen.type, option: 'custom' };
    const steps = [
      step(0, 'choose-point', 'Choose the recovery point', { recoveryPoint }),
      step(1, 'shutdown-source', 'Shut the source down', {
        shutdown: 'graceful after 3.0 s',
        drain: 'every write made until the shutdown reached the replica',
      }),
      step(2, 'start', 'Start the machine at the recovery site', {
        machineUp: { at: at(35), seconds: 4.2 },
        sentBytes: 3 * 1024 * 1024,
      }),
    ];
    const job: Job = {
      id: randomUUID(),
      kind: 'failover',
      targetType: 'machine',
      targetId: machine.id,
      state: 'succeeded',
      progress: 100,
      input: { recoveryPoint: { option: 'custom', pointId: chosen.id } },
      // As stored now: only the fact the vault recorded after the job, outside its steps (they keep theirs).
      output: { fenceOnReturn: 'confirmed off' },
      createdBy: 'admin',
      createdAt: at(60),
      startedAt: at(60),
      finishedAt: at(30),
      error: null,
      cancelRequested: false,
      steps,
    };
    await store.jobs.create(job);
    // A change-point since: the copy runs from a later point than the failover chose.
    const current = (await store.machines.get(machine.id))!;
    await store.machines.update({
      ...current,
      runtime: {
        ...current.runtime,
        failover: {
          hostId: current.activeHostId,
          viewId: 'view-1',
          vmName: 'web-1',
          pointId: later.id,
          pointTime: later.time,
          disks: [],
          startedAt: at(10),
        },
      },
    });

    const page = await watchedPage(f, f.adminToken, consoleErrors);
    await page.goto(`${f.url}/jobs/${job.id}`);
    await page.locator('[data-job-state="succeeded"]').waitFor();
    const items = page.locator('.steps > li');
    assert.equal(await items.count(), 3);
    const first = items.nth(0).getByTestId('step-output');
    assert.match(
      (await first.locator('[data-output="recoveryPoint"]').textContent()) ?? '',
      /crash-consistent \(custom\)$/,
    );
    await items.nth(1).locator('[data-output="shutdown"]', { hasText: 'graceful after 3.0 s' }).waitFor();
    const third = items.nth(2).getByTestId('step-output');
    await third.locator('[data-output="seconds"]', { hasText: /^4 s$/ }).waitFor();
    await third.locator('[data-output="sentBytes"]', { hasText: /^3\.0 MiB$/ }).waitFor();
    for (const text of await page.getByTestId('step-output').allTextContents()) {
      assert.doesNotMatch(text, /[{}"]/, 'no JSON');
    }
    // Only what no step recorded stays under Results.
    const results = page.getByTestId('job-output');
    assert.equal(await results.locator('dt').count(), 1);
    await results.locator('[data-output="fenceOnReturn"]', { hasText: 'confirmed off' }).waitFor();

    const point = page.getByTestId('job-point');
    assert.match((await point.textContent()) ?? '', /crash-consistent \(custom\)/);
    await point.getByTestId('job-point-now').waitFor();
    assert.match((await point.getByTestId('job-point-now').textContent()) ?? '', /changed since/);
    await screenshots(f, page, 'job-failover-steps');
    await page.close();
  });

  test('no request left the vault, no page error, no console error', () => {
    assert.deepEqual(f.foreignRequests, []);
    assert.deepEqual(f.pageErrors, []);
    assert.deepEqual(consoleErrors, []);
  });
});
