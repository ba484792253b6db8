import type { Machine, ServerLinkSnapshot } from '../../../src/domain/model.ts';
import { serverLinkWords } from '../../../src/domain/server-link-words.ts';
import { ago } from '../format-time.ts';
import { useNow } from '../use-now.ts';

type LinkState = ServerLinkSnapshot['state'] | 'not-replicating';

const STATE_TEXT: Record<LinkState, string> = {
  'in-sync': 'in sync',
  syncing: 'syncing',
  degraded: 'degraded',
  'agent-silent': 'agent silent',
  'awaiting-enrolment': 'awaiting enrolment',
  'not-replicating': 'not replicating',
};

/**
 * Where a server's link stands: the host's snapshot when replication runs,
 * else what the vault knows (enrolled or not). Green only for `in-sync`.
 */
export function serverLinkOf(machine: Machine): {
  state: LinkState;
  words: string;
  link: ServerLinkSnapshot | null;
} {
  const link = machine.replication?.server ?? null;
  if (link) return { state: link.state, words: '', link };
  if (!machine.server?.enrolledAt) {
    return { state: 'awaiting-enrolment', words: "awaiting the enrolment of the server's agent", link: null };
  }
  return {
    state: 'not-replicating',
    words: 'enrolled; replication is not enabled, so Haven has no copy of it',
    link: null,
  };
}

/** The state badge and the words ("md resync 45%", "the NBD leg of disk0 is out", "agent silent since …"). */
export function ServerLinkState({ machine }: { machine: Machine }) {
  const now = useNow();
  const { state, words, link } = serverLinkOf(machine);
  const look =
    state === 'in-sync'
      ? 'health-healthy'
      : state === 'degraded' || state === 'agent-silent'
        ? 'health-critical'
        : state === 'syncing'
          ? 'badge-busy'
          : 'badge-state';
  const said = link ? serverLinkWords(link, (iso) => ago(iso, now)) : words;
  return (
    <span className="server-link" data-link-state={state}>
      <span className={`badge ${look}`}>
        <span aria-hidden="true">{state === 'in-sync' ? '●' : look === 'health-critical' ? '▲' : '○'}</span>{' '}
        {STATE_TEXT[state]}
      </span>{' '}
      <span className="server-link-words">{said}</span>
      {link?.problem && <span className="mirror-problem">{link.problem}</span>}
    </span>
  );
}
