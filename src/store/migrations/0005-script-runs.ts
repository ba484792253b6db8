import type { Kysely, Migration } from 'kysely';

/** A script action as stored before scripts were registered: a command in `text`. */
interface StoredAction {
  kind: string;
  name: string;
  text?: string;
  script?: string;
  timeoutSeconds: number | null;
}
interface StoredGroup {
  before: StoredAction[];
  after: StoredAction[];
}

/** The columns this migration reads, as they were when it was written (not as schema.ts says now). */
interface SchemaThen {
  recovery_plans: { id: string; groups: string };
  jobs: { id: string; kind: string; input: string };
}

/** Inline commands become 'inline-script' actions: kept for an admin to register, never run. */
function markInline(groups: StoredGroup[]): { groups: StoredGroup[]; changed: boolean } {
  let changed = false;
  const mark = (action: StoredAction): StoredAction => {
    if (action.kind !== 'script' || typeof action.script === 'string') return action;
    changed = true;
    return { ...action, kind: 'inline-script', text: action.text ?? '' };
  };
  const out = groups.map((g) => ({ ...g, before: g.before.map(mark), after: g.after.map(mark) }));
  return { groups: out, changed };
}

/**
 * Every run of a plan's script action, kept durably (who started the plan
 * job, which script and content, as which user, how it ended, its bounded
 * output). Plans and plan jobs that still hold inline script commands are
 * rewritten so that those commands are never run.
 */
export const scriptRunsMigration: Migration = {
  async up(unknownDb: Kysely<unknown>): Promise<void> {
    const db = unknownDb as Kysely<SchemaThen>;
    await db.schema
      .createTable('script_runs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('job_id', 'text', (c) => c.notNull())
      .addColumn('step_name', 'text', (c) => c.notNull())
      .addColumn('plan_id', 'text', (c) => c.notNull())
      .addColumn('plan_name', 'text', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('script', 'text', (c) => c.notNull())
      .addColumn('sha256', 'text', (c) => c.notNull())
      .addColumn('started_by', 'text', (c) => c.notNull())
      .addColumn('run_as', 'text', (c) => c.notNull())
      .addColumn('run_as_note', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text', (c) => c.notNull())
      .addColumn('finished_at', 'text')
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('exit_code', 'integer')
      .addColumn('signal', 'text')
      .addColumn('output', 'text', (c) => c.notNull())
      .addColumn('output_bytes', 'bigint', (c) => c.notNull())
      .addColumn('output_truncated', 'boolean', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('script_runs_job_id').on('script_runs').column('job_id').execute();
    await db.schema.createIndex('script_runs_started_at').on('script_runs').column('started_at').execute();

    for (const plan of await db.selectFrom('recovery_plans').select(['id', 'groups']).execute()) {
      const { groups, changed } = markInline(JSON.parse(plan.groups) as StoredGroup[]);
      if (changed)
        await db
          .updateTable('recovery_plans')
          .set({ groups: JSON.stringify(groups) })
          .where('id', '=', plan.id)
          .execute();
    }
    const jobs = await db
      .selectFrom('jobs')
      .select(['id', 'input'])
      .where('kind', '=', 'recovery-plan')
      .execute();
    for (const job of jobs) {
      const input = JSON.parse(job.input) as { groups?: StoredGroup[] };
      if (!input.groups) continue;
      const { groups, changed } = markInline(input.groups);
      if (changed)
        await db
          .updateTable('jobs')
          .set({ input: JSON.stringify({ ...input, groups }) })
          .where('id', '=', job.id)
          .execute();
    }
  },
};
