import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openStore } from '../open-store.ts';
import { sqliteMigratedBefore } from './sqlite-migrated-before.ts';

describe('migration 0015-view-closed-reason', () => {
  it('reads the free-text reasons written before it as the typed reasons they stood for', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'haven-migration-'));
    try {
      const db = await sqliteMigratedBefore(dataDir, '0015');
      const now = new Date().toISOString();
      const row = (id: string, closedReason: string | null) => ({
        id,
        machine_id: 'vm-1',
        machine_name: 'web-01',
        point_id: 'vm-1/disk0@3',
        point_time: now,
        host_id: 'h1',
        writable: 0,
        opened_by: 'alice',
        opened_at: now,
        expires_at: now,
        disks: '[]',
        closed_at: closedReason === null ? null : now,
        closed_reason: closedReason,
      });
      // As 0013 wrote them.
      await db
        .insertInto('access_views')
        .values([
          row('v-open', null),
          row('v-expired', 'expired'),
          row('v-own', 'closed by alice'),
          row('v-other', 'closed by bob'),
          row(
            'v-host',
            'its host no longer serves it (the host agent restarted, and a view is kept only in its memory)',
          ),
        ])
        .execute();
      await db.destroy();

      const store = await openStore({ dataDir });
      try {
        const reasons = Object.fromEntries(
          (await store.accessViews.list()).map((v) => [v.id, v.closedReason] as const),
        );
        assert.deepEqual(reasons, {
          'v-open': null,
          'v-expired': { kind: 'expired' },
          'v-own': { kind: 'stopped', by: 'alice' },
          'v-other': { kind: 'deleted', by: 'bob' },
          'v-host': { kind: 'host-restarted' },
        });
      } finally {
        await store.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
