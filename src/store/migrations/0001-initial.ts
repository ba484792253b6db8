import { type Kysely, type Migration, sql } from 'kysely';

/**
 * The initial schema. Only types that mean the same on SQLite and PostgreSQL
 * (text, integer, bigint, boolean); see schema.ts. Foreign keys only where the
 * child cannot outlive its parent (steps of a job, points of a machine, hosts
 * and enrolment tokens of a site); references the domain manages itself
 * (machine -> host, machine -> policy) are plain indexed columns so the domain
 * can answer with its own error instead of a constraint violation.
 */
export const initialMigration: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('sites')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('role', 'text', (c) => c.notNull())
      .addColumn('network_mapping', 'text', (c) => c.notNull())
      .addColumn('test_network', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('hosts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('site_id', 'text', (c) => c.notNull().references('sites.id'))
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('replication_address', 'text')
      .addColumn('max_protected_disks', 'integer', (c) => c.notNull())
      .addColumn('capabilities', 'text', (c) => c.notNull())
      .addColumn('version', 'text')
      .addColumn('last_heartbeat_at', 'text')
      .addColumn('enrolled_at', 'text', (c) => c.notNull())
      .addColumn('credential_hash', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('hosts_site_id').on('hosts').column('site_id').execute();

    await db.schema
      .createTable('enrolment_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('secret_hash', 'text', (c) => c.notNull())
      .addColumn('site_id', 'text', (c) => c.notNull().references('sites.id'))
      .addColumn('host_name', 'text')
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('used_at', 'text')
      .addColumn('used_by_host_id', 'text')
      .execute();

    await db.schema
      .createTable('api_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('role', 'text', (c) => c.notNull())
      .addColumn('secret_hash', 'text', (c) => c.notNull().unique())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('last_used_at', 'text')
      .execute();
    await db.schema.createIndex('api_tokens_role').on('api_tokens').column('role').execute();

    await db.schema
      .createTable('policies')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('rpo_threshold_seconds', 'integer', (c) => c.notNull())
      .addColumn('retention_seconds', 'integer', (c) => c.notNull())
      .addColumn('app_consistent_frequency_seconds', 'integer', (c) => c.notNull())
      .addColumn('built_in', 'boolean', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('machines')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('primary_host_id', 'text', (c) => c.notNull())
      .addColumn('recovery_host_id', 'text')
      .addColumn('active_host_id', 'text', (c) => c.notNull())
      .addColumn('policy_id', 'text')
      .addColumn('group_id', 'text')
      .addColumn('os_family', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('health', 'text', (c) => c.notNull())
      .addColumn('disks', 'text', (c) => c.notNull())
      .addColumn('recovery_settings', 'text', (c) => c.notNull())
      .addColumn('current_job_id', 'text')
      .addColumn('original_exists', 'boolean', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('machines_state').on('machines').column('state').execute();
    await db.schema
      .createIndex('machines_primary_host_id')
      .on('machines')
      .column('primary_host_id')
      .execute();
    await db.schema
      .createIndex('machines_recovery_host_id')
      .on('machines')
      .column('recovery_host_id')
      .execute();
    await db.schema.createIndex('machines_active_host_id').on('machines').column('active_host_id').execute();
    await db.schema.createIndex('machines_policy_id').on('machines').column('policy_id').execute();

    await db.schema
      .createTable('recovery_points')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('machine_id', 'text', (c) => c.notNull().references('machines.id').onDelete('cascade'))
      .addColumn('time', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('group_point_id', 'text')
      .addColumn('processed', 'boolean', (c) => c.notNull())
      .addColumn('size_bytes', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('recovery_points_machine_id_time')
      .on('recovery_points')
      .columns(['machine_id', 'time'])
      .execute();

    await db.schema
      .createTable('recovery_plans')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('description', 'text', (c) => c.notNull())
      .addColumn('groups', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('jobs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('target_type', 'text', (c) => c.notNull())
      .addColumn('target_id', 'text')
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('progress', 'integer', (c) => c.notNull())
      .addColumn('input', 'text', (c) => c.notNull())
      .addColumn('output', 'text', (c) => c.notNull())
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('finished_at', 'text')
      .addColumn('error', 'text')
      .addColumn('cancel_requested', 'boolean', (c) => c.notNull())
      .addColumn('worker_id', 'text')
      .addColumn('lease_until', 'text')
      .execute();
    // The claim query: runnable jobs (queued, or running with a lease) oldest first.
    await db.schema
      .createIndex('jobs_state_created_at')
      .on('jobs')
      .columns(['state', 'created_at'])
      .execute();
    await db.schema
      .createIndex('jobs_target_id_created_at')
      .on('jobs')
      .columns(['target_id', 'created_at'])
      .execute();
    await db.schema.createIndex('jobs_created_at').on('jobs').column('created_at').execute();

    await db.schema
      .createTable('job_steps')
      .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
      .addColumn('idx', 'integer', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('title', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('progress', 'integer', (c) => c.notNull())
      .addColumn('message', 'text')
      .addColumn('started_at', 'text')
      .addColumn('finished_at', 'text')
      .addColumn('error', 'text')
      .addPrimaryKeyConstraint('job_steps_pk', ['job_id', 'idx'])
      .execute();

    await db.schema
      .createTable('alerts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('key', 'text', (c) => c.notNull())
      .addColumn('severity', 'text', (c) => c.notNull())
      .addColumn('message', 'text', (c) => c.notNull())
      .addColumn('subject_type', 'text', (c) => c.notNull())
      .addColumn('subject_id', 'text')
      .addColumn('raised_at', 'text', (c) => c.notNull())
      .addColumn('cleared_at', 'text')
      .execute();
    // At most one open alert per key: this is what makes `raise` idempotent under races.
    await db.schema
      .createIndex('alerts_open_key')
      .on('alerts')
      .column('key')
      .unique()
      .where(sql.ref('cleared_at'), 'is', null)
      .execute();
    await db.schema.createIndex('alerts_raised_at').on('alerts').column('raised_at').execute();

    await db.schema
      .createTable('settings')
      .addColumn('key', 'text', (c) => c.primaryKey())
      .addColumn('value', 'text', (c) => c.notNull())
      .execute();
  },
};
