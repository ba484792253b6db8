import type { Machine, RecoveryPoint } from '../../../src/domain/model.ts';
import { formatTime } from '../format-time.ts';

/**
 * The chosen recovery point, opened or copied outside Haven: the commands to
 * run where the CLI is set up. A browser cannot sensibly write a disk image of
 * many gigabytes to disk or speak NBD, so the portal hands over the command
 * instead of a download.
 */
export function PointAccessHint({ machine, point }: { machine: Machine; point: RecoveryPoint }) {
  const stamp = point.time.replace(/[-:]/g, '').replace(/\..*$/, '');
  const name = /^[\w.-]+$/.test(machine.name) ? machine.name : `'${machine.name.replace(/'/g, `'\\''`)}'`;
  const commands = [
    `haven view ${name} --point ${point.id}`,
    `haven export ${name} --point ${point.id} --out ${machine.name}-${stamp}.raw`,
    `haven export ${name} --point ${point.id} --out ${machine.name}-${stamp}.qcow2 --format qcow2`,
  ];
  return (
    <details className="point-access" data-testid="point-access">
      <summary>Export or open this point ({formatTime(point.time)})…</summary>
      <p>
        Run these where the <code>haven</code> CLI reaches the vault. <code>haven view</code> opens the point
        as NBD exports (read-only, over TLS with a key made for the view) and prints the <code>nbdinfo</code>{' '}
        and <code>qemu-img</code> lines to read them, until you stop it; <code>haven export</code> copies each
        disk to a file with progress. A browser cannot write a disk image to your disk, so the portal does not
        download it.
      </p>
      <pre>{commands.join('\n')}</pre>
    </details>
  );
}
