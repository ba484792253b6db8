import { createHash } from 'node:crypto';
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
  jobs: { id: string; kind: string; input: string; output: string; created_by: string; created_at: string };
  job_steps: { job_id: string; name: string; started_at: string | null; finished_at: string | null };
  /** Created here; its columns are spelled out once, in the createTable below. */
  script_runs: Record<string, string | number | null>;
}

/** What a plan job kept per script action in its output before runs were recorded apart. */
interface OldActionOutput {
  name?: string;
  output?: string;
  exitCode?: number | null;
  signal?: string | null;
  timedOut?: boolean;
}

/** Old runs kept the last 64 KiB of their output. */
const OLD_OUTPUT_BOUND = 64 * 1024;

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
      .select(['id', 'input', 'output', 'created_by', 'created_at'])
      .where('kind', '=', 'recovery-plan')
      .execute();
    for (const job of jobs) {
      const input = JSON.parse(job.input) as { planId?: string; planName?: string; groups?: StoredGroup[] };
      if (!input.groups) continue;
      const { groups, changed } = markInline(input.groups);
      if (changed)
        await db
          .updateTable('jobs')
          .set({ input: JSON.stringify({ ...input, groups }) })
          .where('id', '=', job.id)
          .execute();
      await moveOutputs(db, job, input, input.groups);
    }
  },
};

/**
 * Plan jobs used to keep each script's output in the job's output, which
 * viewers see: it moves into run records (operators and admins only), and
 * the job keeps how each run ended.
 */
async function moveOutputs(
  db: Kysely<SchemaThen>,
  job: { id: string; output: string; created_by: string; created_at: string },
  input: { planId?: string; planName?: string },
  groups: StoredGroup[],
): Promise<void> {
  const output = JSON.parse(job.output) as { actions?: Record<string, OldActionOutput> };
  const actions = output.actions ?? {};
  const moved = Object.entries(actions).filter(([, a]) => typeof a.output === 'string');
  if (moved.length === 0) return;
  const steps = await db
    .selectFrom('job_steps')
    .select(['name', 'started_at', 'finished_at'])
    .where('job_id', '=', job.id)
    .execute();
  for (const [stepName, action] of moved) {
    // Step names are g<group>.<side>.<index>, 1-based.
    const [, g, side, i] = /^g(\d+)\.(before|after)\.(\d+)$/.exec(stepName) ?? [];
    const planned = g ? groups[Number(g) - 1]?.[side as 'before' | 'after'][Number(i) - 1] : undefined;
    const step = steps.find((s) => s.name === stepName);
    const text = action.output!;
    const bytes = Buffer.byteLength(text);
    await db
      .insertInto('script_runs')
      .values({
        id: `${job.id}:${stepName}`,
        job_id: job.id,
        step_name: stepName,
        plan_id: input.planId ?? '',
        plan_name: input.planName ?? '',
        action: action.name ?? planned?.name ?? stepName,
        script: '(inline command)',
        sha256: createHash('sha256')
          .update(planned?.text ?? '')
          .digest('hex'),
        started_by: job.created_by,
        run_as: "the vault's user",
        run_as_note: 'ran before scripts were registered: as the vault, with its environment',
        started_at: step?.started_at ?? job.created_at,
        finished_at: step?.finished_at ?? null,
        state: action.timedOut
          ? 'timed-out'
          : action.signal
            ? 'killed'
            : action.exitCode === 0
              ? 'succeeded'
              : 'failed',
        exit_code: action.exitCode ?? null,
        signal: action.signal ?? null,
        output: text,
        output_bytes: bytes,
        output_truncated: bytes >= OLD_OUTPUT_BOUND ? 1 : 0,
      })
      .execute();
    const { output: _dropped, ...kept } = action;
    actions[stepName] = { ...kept, runId: `${job.id}:${stepName}` } as OldActionOutput;
  }
  await db
    .updateTable('jobs')
    .set({ output: JSON.stringify({ ...output, actions }) })
    .where('id', '=', job.id)
    .execute();
}
