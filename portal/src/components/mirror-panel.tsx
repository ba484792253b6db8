import type { MirroredDiskState, MirrorSnapshot } from '../../../src/domain/model.ts';
import { formatBytes, formatTime } from '../format-time.ts';
import { MirrorStateBadge } from './badges.tsx';
import { ProgressBar } from './progress-bar.tsx';

/**
 * Live protection of a libvirt domain through QEMU's active mirror, as its
 * host last reported it: the domain's state, each disk's, how often it was
 * armed, the last re-arm and the last point cut. It says "armed" only when
 * the host says every disk is.
 */
export function MirrorPanel({ mirror }: { mirror: MirrorSnapshot }) {
  const state = overallState(mirror);
  const off = state === 'domain-off';
  return (
    <article className="card wide" data-testid="mirror" data-mirror-state={state}>
      <h2>
        Live protection <MirrorStateBadge state={state} />
      </h2>
      <p className={state === 'armed' ? 'ok' : 'warning'} role="status">
        {summary(mirror, state)}
      </p>
      <dl className="facts">
        <dt>Domain</dt>
        <dd>
          <code>{mirror.domain}</code>
        </dd>
        <dt>Last point cut</dt>
        <dd data-testid="mirror-last-point">
          {mirror.lastPointAt ? formatTime(mirror.lastPointAt) : 'none yet'}
        </dd>
        {(mirror.stoppedPointAt || off) && (
          <>
            <dt>Point at the domain's stop</dt>
            <dd>
              {mirror.stoppedPointAt
                ? `${formatTime(mirror.stoppedPointAt)}: everything the domain wrote is before it`
                : 'none: a disk was not armed when the domain stopped, its last writes may be missing'}
            </dd>
          </>
        )}
      </dl>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Disk</th>
              <th scope="col">Mirror</th>
              <th scope="col">Armed</th>
              <th scope="col">Last re-arm</th>
            </tr>
          </thead>
          <tbody>
            {mirror.disks.map((d) => (
              <tr key={d.diskId} data-disk={d.diskId}>
                <td>
                  {d.diskId} <span className="muted">({d.target})</span>
                </td>
                <td className="wrap">
                  <DiskMirrorState disk={d} />
                </td>
                <td>
                  {d.arms === 0 ? 'not yet' : `${d.arms} time${d.arms === 1 ? '' : 's'}`}
                  {d.armedAt && <div className="muted small">last {formatTime(d.armedAt)}</div>}
                </td>
                <td className="wrap">
                  <LastRearm rearm={d.lastRearm} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </article>
  );
}

type OverallState = MirroredDiskState['state'] | MirrorSnapshot['state'];

/** Armed only when the host says so and every disk agrees; a domain whose disks are all off is off. */
function overallState(mirror: MirrorSnapshot): OverallState {
  const disks = mirror.disks;
  if (mirror.state === 'armed') {
    return disks.length > 0 && disks.every((d) => d.state === 'armed') ? 'armed' : 'not-armed';
  }
  if (disks.length > 0 && disks.every((d) => d.state === 'domain-off')) return 'domain-off';
  return mirror.state;
}

function summary(mirror: MirrorSnapshot, state: OverallState): string {
  switch (state) {
    case 'armed':
      return 'Armed: every write to the domain’s disks reaches Haven before the guest sees it complete; Haven cuts crash-consistent points on its own.';
    case 'syncing':
      return 'Syncing: QEMU’s first copy of the disks runs. The replica has no consistent point until it is done.';
    case 'domain-off':
      return 'The domain is off: nothing writes to its disks. The mirror is armed again when the domain starts.';
    default: {
      const unarmed = mirror.disks.filter((d) => d.state === 'not-armed' || d.state === 'domain-off');
      if (unarmed.length === 0) {
        return 'Being armed again: QEMU copies the disks to the replica. No point is consistent until every disk is synced.';
      }
      return `Not armed: writes to ${unarmed.map((d) => `disk ${d.diskId}`).join(', ')} may not reach Haven. No new point is cut until the mirror is armed again.`;
    }
  }
}

function DiskMirrorState({ disk }: { disk: MirroredDiskState }) {
  return (
    <>
      <MirrorStateBadge state={disk.state} />
      {disk.state === 'copying' && disk.copy && (
        <div>
          <ProgressBar
            value={disk.copy.totalBytes > 0 ? (100 * disk.copy.doneBytes) / disk.copy.totalBytes : 0}
            label={`Copy of disk ${disk.diskId}`}
          />{' '}
          {formatBytes(disk.copy.doneBytes)} of {formatBytes(disk.copy.totalBytes)}
        </div>
      )}
      {disk.problem && <div className="mirror-problem">{disk.problem}</div>}
    </>
  );
}

function LastRearm({ rearm }: { rearm: MirroredDiskState['lastRearm'] }) {
  if (!rearm) return <span className="muted">none</span>;
  return (
    <>
      <div>
        {formatTime(rearm.at)}: {rearm.reason}
      </div>
      <div className="muted small">
        {rearm.compared ? 'compared with the replica; ' : 'no compare with the replica; '}
        {rearm.journaledBytes === null
          ? 'bytes are counted once it is synced'
          : `${formatBytes(rearm.journaledBytes)} journaled, ${formatBytes(rearm.skippedBytes ?? 0)} skipped (already in the replica)`}
      </div>
    </>
  );
}
