import type { Machine } from '../../../src/domain/model.ts';
import { formatTime } from '../format-time.ts';
import { useResource } from '../use-resource.ts';
import { Ago } from './ago.tsx';
import { ErrorMessage } from './error-message.tsx';

const TAIL = 15;

/**
 * The drill of an active test failover: since when, from which point, on
 * which network and host, and the last lines of its console. `onCleanup` is
 * absent for those who may not clean it up.
 */
export function DrillPanel({
  machine,
  hostName,
  onCleanup,
}: {
  machine: Machine;
  hostName: (hostId: string) => string;
  onCleanup?: () => void;
}) {
  const drill = machine.runtime.test;
  const console = useResource<{ lines: string[] }>(
    drill ? `/machines/${encodeURIComponent(machine.id)}/console?copy=drill&tail=${TAIL}` : null,
    { refreshMs: 5000 },
  );
  if (!drill) return null;
  const lines = console.data?.lines ?? [];
  return (
    <article className="card wide drill" data-testid="drill">
      <h2>Test failover running</h2>
      <dl className="facts">
        <dt>Since</dt>
        <dd>
          {formatTime(drill.startedAt)} (<Ago iso={drill.startedAt} />)
        </dd>
        <dt>Recovery point</dt>
        <dd data-testid="drill-point">{formatTime(drill.pointTime)}</dd>
        <dt>Test network</dt>
        <dd>
          <code>{drill.network}</code> (isolated from production)
        </dd>
        <dt>Runs on</dt>
        <dd>
          {hostName(drill.hostId)} as <code>{drill.vmName}</code>
        </dd>
      </dl>
      <h3>Console (last {TAIL} lines)</h3>
      <ErrorMessage error={console.error} />
      {console.data &&
        (lines.length === 0 ? (
          <p className="muted">Nothing on the console yet.</p>
        ) : (
          <pre className="log console-tail" data-testid="drill-console">
            {lines.join('\n')}
          </pre>
        ))}
      {onCleanup && (
        <button type="button" onClick={onCleanup} data-testid="drill-cleanup">
          Clean up the drill…
        </button>
      )}
    </article>
  );
}
