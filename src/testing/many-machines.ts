import assert from 'node:assert/strict';
import type { Host, Machine, Policy } from '../domain/model.ts';
import type { PortalFixture } from './portal-fixture.ts';

/**
 * Fills the vault of a portal fixture up to `total` machines (registered on
 * the primary host, never started), of which the first `protectedCount` new
 * ones are protected to the recovery host with one recovery point each: the
 * dashboard's RPO chart then has points to draw. Returns the new machines' names.
 */
export async function addManyMachines(
  f: PortalFixture,
  total: number,
  protectedCount: number,
): Promise<string[]> {
  const hosts = (await f.api<{ hosts: Host[] }>('GET', '/hosts')).body.hosts;
  const primary = hosts.find((h) => h.name === 'primary');
  const recovery = hosts.find((h) => h.name === 'recovery');
  assert.ok(primary && recovery, 'the fixture has a primary and a recovery host');
  const existing = (await f.api<{ machines: Machine[] }>('GET', '/machines')).body.machines.length;
  const names = Array.from(
    { length: Math.max(0, total - existing) },
    (_, i) => `vm-${String(existing + i).padStart(4, '0')}`,
  );
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
  const store = f.haven.vault.context.store;
  const policy = (await f.api<{ policies: Policy[] }>('GET', '/policies')).body.policies.find(
    (p) => !p.builtIn,
  );
  assert.ok(policy, 'the fixture has a policy of its own');
  const now = Date.now();
  for (const [i, name] of names.slice(0, protectedCount).entries()) {
    const m = await store.machines.getByName(name);
    assert.ok(m);
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
      time: new Date(now - (i + 1) * 30_000).toISOString(),
      sequence: 1,
      type: 'crash-consistent',
      groupPointId: null,
      processed: true,
      sizeBytes: 4096,
    });
  }
  return names;
}

/** Loads the dashboard and resolves with the time from navigation start to its `haven:dashboard-ready` mark, in ms. */
export async function dashboardReadyMs(page: import('playwright-core').Page, url: string): Promise<number> {
  await page.goto(url);
  await page.waitForFunction(() => performance.getEntriesByName('haven:dashboard-ready').length > 0);
  return page.evaluate(() => performance.getEntriesByName('haven:dashboard-ready')[0]!.startTime);
}
