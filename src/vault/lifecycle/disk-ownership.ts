import type { Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { describeWriters, hasWriters } from '../../host/image-writers.ts';
import { hostServices } from '../host-call.ts';
import type { VaultContext } from '../vault-context.ts';

/**
 * Refuses to replicate a machine whose disk image another process writes
 * (a QEMU started by hand, a script): Haven would not see those writes, and
 * the replica would be stale, then corrupt, while looking healthy. The host
 * refuses again when the disk is attached; this is the early, named refusal.
 * A host that is not connected is not asked: the job's first step waits for it.
 *
 * An imported libvirt domain's own QEMU writes its images: Haven sees those
 * writes through the mirror it arms, so that QEMU (and the image lock it
 * holds) is not a foreign writer; any other process is.
 */
export async function refuseUnseenWriters(vault: VaultContext, machine: Machine): Promise<void> {
  if (!vault.hosts.isConnected(machine.activeHostId)) return;
  const disk = hostServices(vault, machine.activeHostId).disk;
  const ownQemu = machine.importedFrom?.domain ?? null;
  for (const d of machine.disks) {
    const all = await disk.writers({ machineId: machine.id, diskId: d.id, source: d.source });
    const own = all.writers.filter((w) => ownQemu !== null && w.qemuName === ownQemu);
    const found = {
      writers: all.writers.filter((w) => !own.includes(w)),
      // The lock is the domain's own when its QEMU was found writing the image.
      qemuWriteLock: all.qemuWriteLock && own.length === 0,
    };
    if (!hasWriters(found)) continue;
    throw new HavenError(
      'conflict',
      `Machine '${machine.name}' (${machine.state}): disk ${d.id}'s image '${d.source}' is open for writing by ${describeWriters(found)}. Haven cannot see those writes, so its replica would not follow the disk. Stop that process (or run the machine through Haven: haven machines start) and retry`,
      {
        machineId: machine.id,
        machineName: machine.name,
        state: machine.state,
        diskId: d.id,
        source: d.source,
        writers: found.writers,
        qemuWriteLock: found.qemuWriteLock,
      },
    );
  }
}
