import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Host, Machine } from '../../domain/model.ts';
import { buildGuestImage, formatDataDisk, guestCommandLine } from '../../guest/index.ts';
import { hostServices } from '../../vault/jobs/lifecycle-job.ts';
import type { VaultContext } from '../../vault/vault-context.ts';
import type { ApiClient } from '../api-client.ts';

export const DEMO_MACHINE = 'demo-01';
const DEMO_DISK_BYTES = 256 << 20;

/**
 * The demo machine `haven up` offers: the tiny test guest (kernel + busybox
 * initramfs built from Debian packages) with an ext4 data disk, running on
 * the primary host with its disk behind the disk service, writing numbered,
 * checksummed records. Unprotected: protecting it is the tutorial's first step.
 */
export async function ensureDemoMachine(
  api: ApiClient,
  vault: VaultContext,
  dataDir: string,
  log: (line: string) => void,
): Promise<Machine> {
  const { hosts } = await api.get<{ hosts: Host[] }>('/hosts');
  const primary = hosts.find((h) => h.name === 'primary');
  if (!primary) throw new Error('the primary host is not enrolled');
  const image = await buildGuestImage({ log });
  let machine = (await api.get<{ machines: Machine[] }>('/machines')).machines.find(
    (m) => m.name === DEMO_MACHINE,
  );
  if (!machine) {
    const dir = join(dataDir, 'demo');
    await mkdir(dir, { recursive: true });
    const disk = join(dir, `${DEMO_MACHINE}.img`);
    if (!existsSync(disk)) await formatDataDisk(disk, { sizeBytes: DEMO_DISK_BYTES });
    machine = await api.post<Machine>('/machines', {
      name: DEMO_MACHINE,
      hostId: primary.id,
      disks: [{ id: 'disk0', sizeBytes: DEMO_DISK_BYTES, source: disk }],
      recoverySettings: {
        targetName: DEMO_MACHINE,
        cpus: 1,
        memoryMiB: 128,
        nics: [],
        boot: {
          kernel: image.kernel,
          initrd: image.initramfs,
          cmdline: guestCommandLine({ workload: 'records', rate: 2 }),
        },
      },
    });
  }
  if (machine.state === 'unprotected' && machine.activeHostId === primary.id) {
    // Every protected disk is attached through the disk service: the machine runs on it from the start.
    const services = hostServices(vault, primary.id);
    const disks = [];
    for (const d of machine.disks) {
      const exported = await services.disk.attach({
        machineId: machine.id,
        diskId: d.id,
        source: d.source,
        sizeBytes: d.sizeBytes,
      });
      disks.push({ diskId: d.id, nbdUri: exported.nbdUri });
    }
    const status = await services.hypervisor
      .status({ name: machine.name })
      .catch(() => ({ state: 'absent' as const }));
    if (status.state === 'absent') {
      const boot = machine.recoverySettings.boot!;
      await services.hypervisor.define({
        machine: { name: machine.name, cpus: 1, memoryMiB: 128, disks, nics: [], boot },
      });
    }
    if (status.state !== 'running') await services.hypervisor.start({ name: machine.name });
  }
  return machine;
}
