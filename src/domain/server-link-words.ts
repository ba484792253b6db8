import type { ServerLegState, ServerLinkSnapshot } from './model.ts';

/** How far a leg's resync or recovery is (the agent's figure, else what md recorded on the leg); null unknown. */
function legPercent(server: ServerLinkSnapshot, leg: ServerLegState): number | null {
  if (leg.md === 'in-sync') return 100;
  const reported = server.agent?.disks.find((d) => d.diskId === leg.diskId)?.progressPercent;
  if (reported != null) return reported;
  return leg.syncedBytes !== null && leg.sizeBytes > 0 ? (100 * leg.syncedBytes) / leg.sizeBytes : null;
}

/**
 * Where a server's protection stands, in words: what a job's progress, the
 * machine's problem and the portal say. `at` writes the agent's last report
 * time (the portal: relative).
 */
export function serverLinkWords(
  server: ServerLinkSnapshot,
  at: (iso: string) => string = (iso) => iso,
): string {
  const legs = server.legs;
  switch (server.state) {
    case 'awaiting-enrolment':
      return "awaiting the enrolment of the server's agent (haven servers enrolment NAME gives its commands)";
    case 'agent-silent':
      return `the server's agent is silent${server.agent ? ` (last report ${at(server.agent.receivedAt)})` : ''}: the server or its link is down`;
    case 'in-sync':
      return `in sync (${legs.length} leg${legs.length === 1 ? '' : 's'})`;
    case 'degraded': {
      const out = legs.filter((l) => !l.connected || l.md === 'unknown').map((l) => l.diskId);
      const which = out.length > 0 ? `the NBD leg of ${out.join(', ')} is out` : 'an NBD leg is out';
      return `degraded: ${which}; md resyncs what changed once it is back`;
    }
    case 'syncing': {
      const parts = legs
        .filter((l) => l.md === 'resyncing' || l.md === 'recovering')
        .map((l) => {
          const percent = legPercent(server, l);
          return `${l.diskId} ${l.md === 'resyncing' ? 'md resync' : 'md recovery'} ${percent === null ? '' : `${Math.floor(percent)}%`}`.trim();
        });
      return parts.length > 0 ? parts.join(', ') : 'md resync running';
    }
  }
}

/** How far the legs' sync is, 0..100 (the least synced leg), for a job's progress. */
export function serverSyncPercent(server: ServerLinkSnapshot): number {
  if (server.state === 'in-sync') return 100;
  const percents = server.legs.map((l) => legPercent(server, l) ?? 0);
  return percents.length === 0 ? 0 : Math.min(99, ...percents);
}

/** Whether the server's agent reports to its host (it is neither silent nor yet to enrol). */
export function agentReporting(link: Pick<ServerLinkSnapshot, 'state'>): boolean {
  return link.state !== 'agent-silent' && link.state !== 'awaiting-enrolment';
}
