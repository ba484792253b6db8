import type { Machine, ServerAgentReport, ServerLegState } from '../../../src/domain/model.ts';
import { formatBytes, formatTime } from '../format-time.ts';
import { Ago } from './ago.tsx';
import { ProgressBar } from './progress-bar.tsx';
import { ServerLinkState, serverLinkOf } from './server-link-state.tsx';

const MD_TEXT: Record<ServerLegState['md'], string> = {
  'in-sync': 'in sync',
  resyncing: 'resyncing',
  recovering: 'recovering',
  unknown: 'no md superblock seen yet',
};

/**
 * The link of a physical server, as its primary host last reported it (like
 * the mirror panel of a libvirt domain): each NBD leg, the server agent's
 * last report and the problem in words. Green only when the host says the
 * link is in sync.
 */
export function ServerLinkPanel({
  machine,
  onNewEnrolment,
}: {
  machine: Machine;
  onNewEnrolment?: () => void;
}) {
  const { state, link } = serverLinkOf(machine);
  const settings = machine.server;
  return (
    <article className="card wide" data-testid="server-link-panel" data-link-state={state}>
      <h2>Server link</h2>
      <p role="status" className={state === 'in-sync' ? 'ok' : 'warning'}>
        <ServerLinkState machine={machine} />
      </p>
      <dl className="facts">
        <dt>Writes to the NBD legs</dt>
        <dd>
          {settings?.writeBehind == null
            ? 'synchronous (order kept)'
            : `write-behind, up to ${settings.writeBehind} writes (a point may miss writes the server completed)`}
        </dd>
        <dt>nbd-client timeout</dt>
        <dd>{settings ? `${settings.nbdTimeoutSeconds} s` : '—'}</dd>
        <dt>Agent enrolled</dt>
        <dd>{settings?.enrolledAt ? formatTime(settings.enrolledAt) : 'not yet'}</dd>
      </dl>
      {onNewEnrolment && (
        <div className="toolbar">
          <button type="button" onClick={onNewEnrolment}>
            New enrolment…
          </button>
        </div>
      )}
      {link && link.legs.length > 0 && (
        <>
          <h3>NBD legs</h3>
          <div className="table-wrap">
            <table className="stack" data-testid="server-legs">
              <thead>
                <tr>
                  <th scope="col">Disk</th>
                  <th scope="col">Connected</th>
                  <th scope="col">md</th>
                  <th scope="col">Synced</th>
                  <th scope="col">Points</th>
                  <th scope="col">Last write</th>
                </tr>
              </thead>
              <tbody>
                {link.legs.map((leg) => (
                  <tr key={leg.diskId} data-leg={leg.diskId}>
                    <th scope="row">{leg.diskId}</th>
                    <td data-label="Connected">{leg.connected ? 'yes' : 'no'}</td>
                    <td data-label="md">{MD_TEXT[leg.md]}</td>
                    <td data-label="Synced">
                      <LegSynced leg={leg} />
                    </td>
                    <td data-label="Points">{leg.pointsAllowed ? 'allowed' : 'held (leg not in sync)'}</td>
                    <td data-label="Last write">
                      <Ago iso={leg.lastWriteAt} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      <h3>Server agent</h3>
      {link?.agent ? (
        <AgentReport agent={link.agent} />
      ) : (
        <p className="muted">No report from the server's agent yet.</p>
      )}
    </article>
  );
}

function LegSynced({ leg }: { leg: ServerLegState }) {
  if (leg.md === 'in-sync') return <>{formatBytes(leg.sizeBytes)} (all)</>;
  if (leg.syncedBytes === null) return <span className="muted">unknown</span>;
  return (
    <>
      <ProgressBar
        value={leg.sizeBytes > 0 ? (100 * leg.syncedBytes) / leg.sizeBytes : 0}
        label={`md sync of ${leg.diskId}`}
      />{' '}
      {formatBytes(leg.syncedBytes)} of {formatBytes(leg.sizeBytes)}
    </>
  );
}

function AgentReport({ agent }: { agent: ServerAgentReport }) {
  return (
    <>
      <dl className="facts" data-testid="server-agent">
        <dt>Hostname</dt>
        <dd>{agent.hostname}</dd>
        <dt>Agent version</dt>
        <dd>{agent.agentVersion}</dd>
        <dt>Received</dt>
        <dd>
          <Ago iso={agent.receivedAt} />
          {agent.stopping ? ' · the server is shutting down' : ''}
        </dd>
      </dl>
      {agent.disks.length > 0 && (
        <div className="table-wrap">
          <table className="stack" data-testid="server-arrays">
            <thead>
              <tr>
                <th scope="col">Disk</th>
                <th scope="col">Array</th>
                <th scope="col">Legs</th>
                <th scope="col">Action</th>
                <th scope="col">Progress</th>
                <th scope="col">Bitmap dirty chunks</th>
              </tr>
            </thead>
            <tbody>
              {agent.disks.map((d) => (
                <tr key={d.diskId} data-array={d.diskId}>
                  <th scope="row">{d.diskId}</th>
                  <td data-label="Array">
                    <code>{d.array}</code>
                  </td>
                  <td data-label="Legs" title="md's members, local first: U in sync, _ out">
                    <code>{d.legs}</code> ({membersInWords(d.legs)})
                  </td>
                  <td data-label="Action">{d.action}</td>
                  <td data-label="Progress">{d.progressPercent === null ? '—' : `${d.progressPercent}%`}</td>
                  <td data-label="Bitmap dirty chunks">{d.bitmapDirtyChunks ?? '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

/** md's members as the agent reports them, local first: '[UU]' both in sync, '[U_]' the NBD leg out. */
function membersInWords(legs: string): string {
  const members = legs.replace(/^\[|\]$/g, '');
  if (members.length > 0 && !members.includes('_')) return 'both in sync';
  const out = [...members].flatMap((m, i) =>
    m === '_' ? [i === 0 ? 'the local device' : 'the NBD leg'] : [],
  );
  return `${out.join(' and ')} out`;
}
