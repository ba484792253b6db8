import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Generated, Kysely, sql } from 'kysely';
import { NodeSqliteDialect, openNodeSqlite } from './index.ts';

interface TestDb {
  items: { id: Generated<number>; name: string; flag: number };
}

describe('node:sqlite Kysely dialect', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'haven-sqlite-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('opens with WAL, synchronous=FULL, foreign keys and a busy timeout', () => {
    const database = openNodeSqlite(join(dir, 'pragmas.db'), { busyTimeoutMs: 1234 });
    try {
      const pragma = (name: string) => database.native.prepare(`pragma ${name}`).get()?.[name];
      assert.equal(pragma('journal_mode'), 'wal');
      assert.equal(pragma('synchronous'), 2, 'FULL');
      assert.equal(pragma('foreign_keys'), 1);
      assert.equal(database.native.prepare('pragma busy_timeout').get()?.timeout, 1234);
    } finally {
      database.close();
    }
  });

  it('runs Kysely queries: readers, writes, RETURNING, booleans, streams, transactions', async () => {
    const database = openNodeSqlite(join(dir, 'queries.db'));
    const db = new Kysely<TestDb>({ dialect: new NodeSqliteDialect({ database }) });
    try {
      await db.schema
        .createTable('items')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('flag', 'boolean', (c) => c.notNull())
        .execute();
      const inserted = await db
        .insertInto('items')
        .values({ name: 'a', flag: true as unknown as number })
        .executeTakeFirstOrThrow();
      assert.equal(inserted.insertId, 1n);
      const returned = await db
        .insertInto('items')
        .values({ name: 'b', flag: 0 })
        .returning(['id', 'name'])
        .executeTakeFirstOrThrow();
      assert.deepEqual({ ...returned }, { id: 2, name: 'b' });
      const updated = await db.updateTable('items').set({ name: 'c' }).where('id', '>', 0).executeTakeFirst();
      assert.equal(updated.numUpdatedRows, 2n);
      const rows = await db.selectFrom('items').select(['id', 'flag']).orderBy('id').execute();
      assert.deepEqual(
        rows.map((row) => ({ ...row })),
        [
          { id: 1, flag: 1 },
          { id: 2, flag: 0 },
        ],
      );
      const streamed: number[] = [];
      for await (const row of db.selectFrom('items').select('id').orderBy('id').stream())
        streamed.push(row.id);
      assert.deepEqual(streamed, [1, 2]);

      await assert.rejects(
        db.transaction().execute(async (trx) => {
          await trx.insertInto('items').values({ name: 'rolled back', flag: 0 }).execute();
          throw new Error('abort');
        }),
        /abort/,
      );
      const count = await sql<{ n: number }>`select count(*) as n from items`.execute(db);
      assert.equal(count.rows[0]?.n, 2, 'the failed transaction left nothing');
    } finally {
      await db.destroy();
    }
  });

  it('takes the write lock at BEGIN, so a second connection waits instead of failing', async () => {
    const file = join(dir, 'locks.db');
    const database = openNodeSqlite(file);
    const db = new Kysely<TestDb>({ dialect: new NodeSqliteDialect({ database }) });
    const other = openNodeSqlite(file, { busyTimeoutMs: 0 });
    try {
      await sql`create table items (id integer primary key, name text not null, flag boolean not null)`.execute(
        db,
      );
      await db.transaction().execute(async () => {
        // A deferred BEGIN would hold no lock yet; BEGIN IMMEDIATE holds the write lock.
        assert.throws(
          () => other.native.exec("insert into items (name, flag) values ('x', 0)"),
          /locked|busy/i,
        );
      });
      other.native.exec("insert into items (name, flag) values ('x', 0)");
    } finally {
      other.close();
      await db.destroy();
    }
  });
});
