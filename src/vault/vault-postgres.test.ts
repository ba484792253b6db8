import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { startVault } from '../app/start-vault.ts';
import type { Job } from '../domain/model.ts';
import { testStores } from '../testing/test-stores.ts';

const stores = testStores();
after(() => stores.cleanup());

describe('a vault on PostgreSQL (HAVEN_DATABASE_URL)', () => {
  it('serves the API, enrols hosts and backs up with pg_dump', async () => {
    const location = await stores.location('postgres');
    const vault = await startVault({
      dataDir: location.dataDir,
      databaseUrl: location.databaseUrl!,
      port: 0,
    });
    try {
      const auth = { authorization: `Bearer ${vault.adminToken}`, 'content-type': 'application/json' };
      const health = (await (await vault.app.request('/api/v1/health')).json()) as { database: string };
      assert.equal(health.database, 'postgres');
      const site = await vault.app.request('/api/v1/sites', {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ name: 'dc1', role: 'primary' }),
      });
      assert.equal(site.status, 201);
      const backup = await vault.app.request('/api/v1/vault/backup', {
        method: 'POST',
        headers: auth,
        body: '{}',
      });
      assert.equal(backup.status, 202);
      const { id } = (await backup.json()) as Job;
      let job: Job | undefined;
      for (let i = 0; i < 200; i++) {
        job = (await (await vault.app.request(`/api/v1/jobs/${id}`, { headers: auth })).json()) as Job;
        if (job.state === 'succeeded' || job.state === 'failed') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(job?.state, 'succeeded', JSON.stringify(job?.error));
      assert.ok((job!.output.verified as { tables: string[] }).tables.includes('machines'));
    } finally {
      await vault.stop();
    }
  });
});
