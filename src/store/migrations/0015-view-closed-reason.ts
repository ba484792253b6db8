import type { Kysely, Migration } from 'kysely';
import type { ViewClosedReason } from '../../domain/model.ts';

/** The free text 0013 kept (`expired`, `closed by NAME`, or the host's loss), as the reason it stood for. */
function typedReason(text: string, openedBy: string): ViewClosedReason {
  if (text === 'expired') return { kind: 'expired' };
  const by = /^closed by (.*)$/s.exec(text)?.[1];
  if (by !== undefined) return { kind: by === openedBy ? 'stopped' : 'deleted', by };
  return { kind: 'host-restarted' };
}

/**
 * A closed view's reason becomes a ViewClosedReason (JSON in the same
 * column), so clients tell the ends its opener asked for from the others.
 */
export const viewClosedReasonMigration: Migration = {
  async up(untyped: Kysely<unknown>): Promise<void> {
    const db = untyped as Kysely<{
      access_views: { id: string; opened_by: string; closed_reason: string | null };
    }>;
    const rows = await db
      .selectFrom('access_views')
      .select(['id', 'opened_by', 'closed_reason'])
      .where('closed_reason', 'is not', null)
      .execute();
    for (const row of rows) {
      await db
        .updateTable('access_views')
        .set({ closed_reason: JSON.stringify(typedReason(row.closed_reason!, row.opened_by)) })
        .where('id', '=', row.id)
        .execute();
    }
  },
};
