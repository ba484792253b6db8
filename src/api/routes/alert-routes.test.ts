import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Embedded, startEmbedded } from '../../app/start-embedded.ts';
import type { Alert, Host } from '../../domain/model.ts';
import { embeddedApi } from '../../testing/embedded-api.ts';
import type { HostCapacity } from '../../vault/host-capacity.ts';

let dataDir: string;
let haven: Embedded;
const api = embeddedApi(() => haven);

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'haven-alert-routes-'));
  haven = await startEmbedded({ dataDir, port: 0, demo: false });
});
after(async () => {
  await haven?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

async function tokenFor(role: 'viewer' | 'operator'): Promise<string> {
  const created = await api<{ token: string }>('POST', '/tokens', { name: `a-${role}`, role });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return created.body.token;
}

async function as<T>(token: string, method: string, path: string) {
  const response = await haven.vault.app.request(`/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
  });
  return { status: response.status, body: (await response.json()) as T };
}

describe('alerts API', () => {
  it('an operator acknowledges an open alert once; a viewer may not; a cleared alert is refused', async () => {
    const { store } = haven.vault.context;
    const raised = await store.alerts.raise({
      id: 'alert-ack-1',
      key: 'test:ack',
      severity: 'warning',
      message: 'test alert',
      subjectType: 'vault',
      subjectId: null,
      raisedAt: new Date().toISOString(),
      clearedAt: null,
    });
    assert.equal(raised.acknowledged, null);

    const viewer = await as<{ error: { code: string } }>(
      await tokenFor('viewer'),
      'POST',
      `/alerts/${raised.id}/acknowledge`,
    );
    assert.equal(viewer.status, 403);

    const operator = await tokenFor('operator');
    const acked = await as<Alert>(operator, 'POST', `/alerts/${raised.id}/acknowledge`);
    assert.equal(acked.status, 200, JSON.stringify(acked.body));
    assert.equal(acked.body.acknowledged?.by, 'a-operator');
    assert.equal(acked.body.clearedAt, null, 'acknowledged, still open');
    const again = await api<Alert>('POST', `/alerts/${raised.id}/acknowledge`);
    assert.deepEqual(again.body.acknowledged, acked.body.acknowledged, 'the first acknowledgement stays');

    await store.alerts.clear('test:ack', new Date().toISOString());
    const cleared = await api<{ error: { code: string; message: string } }>(
      'POST',
      `/alerts/${raised.id}/acknowledge`,
    );
    assert.equal(cleared.status, 409);
    assert.match(cleared.body.error.message, /test alert.*cleared.*only open alerts/);

    const missing = await api<{ error: { code: string } }>('POST', '/alerts/nope/acknowledge');
    assert.equal(missing.status, 404);
  });

  it("a host's capacity: protected disks against its limit, free space asked of the host", async () => {
    const { hosts } = (await api<{ hosts: Host[] }>('GET', '/hosts')).body;
    const recovery = hosts.find((h) => h.name === 'recovery')!;
    const capacity = await api<HostCapacity>('GET', '/hosts/recovery/capacity');
    assert.equal(capacity.status, 200, JSON.stringify(capacity.body));
    assert.equal(capacity.body.hostId, recovery.id);
    assert.equal(capacity.body.protectedDisks, 0);
    assert.equal(capacity.body.maxProtectedDisks, recovery.maxProtectedDisks);
    assert.equal(capacity.body.storageUnavailable, null);
    assert.ok(capacity.body.storage && capacity.body.storage.totalBytes >= capacity.body.storage.freeBytes);
    assert.ok(capacity.body.storage.freeBytes > 0);
  });
});
