import type { Machine } from '../../../src/domain/model.ts';
import { formatTime } from '../format-time.ts';
import { useConsoleStream } from '../use-console-stream.ts';
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
  // Per drill: the stream ends with its drill, and the next drill follows its own console.
  const console = useConsoleStream(
    drill ? `/machines/${encodeURIComponent(machine.id)}/console?copy=drill` : null,
    TAIL,
    drill?.startedAt,
  );
  if (!drill) return null;
  const lines = console.lines;
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
      <h3>Console (last {TAIL} lines, live)</h3>
      <ErrorMessage error={console.error} />
      {lines.length === 0 ? (
        !console.error && <p className="muted">Nothing on the console yet.</p>
      ) : (
        <pre className="log console-tail" data-testid="drill-console" aria-live="polite">
          {lines.join('\n')}
        </pre>
      )}
      {console.ended && <p className="muted small">The drill's console has ended.</p>}
      {onCleanup && (
        <button type="button" onClick={onCleanup} data-testid="drill-cleanup">
          Clean up the drill…
        </button>
      )}
    </article>
  );
}
