/**
 * A host agent's data path and QEMU driver in a process of their own, for
 * tests that kill it with SIGKILL under a running guest and start it again on
 * the same data directory. Argument: one JSON object
 *   { dataDir, attach?: { machineId, diskId, source, sizeBytes }, machine?: MachineDefinition without disks }
 * The first run attaches the disk and starts the machine on it; a restart
 * only brings back what the data directory holds. Prints one JSON line when
 * ready: the exports, the machines the driver finds, and how long the disk
 * service took to serve its saved exports again. SIGTERM stops it cleanly.
 */
import { join } from 'node:path';
import { startDataPath } from '../host/data-path.ts';
import type { DiskRef, MachineDefinition } from '../host/host-services.ts';
import { createQemuDriver } from '../hypervisor/index.ts';

interface Config {
  dataDir: string;
  attach?: DiskRef & { source: string; sizeBytes: number };
  machine?: Omit<MachineDefinition, 'disks'>;
}

const config = JSON.parse(process.argv[2] ?? '{}') as Config;
const began = Date.now();
const dataPath = await startDataPath({
  dataDir: config.dataDir,
  replicationListen: { host: '127.0.0.1', port: 0 },
});
const servingMs = Date.now() - began;
const driver = createQemuDriver({ stateDir: join(config.dataDir, 'hypervisor') });
if (config.attach) {
  const disk = await dataPath.services.disk.attach(config.attach);
  if (config.machine) {
    await driver.define({
      machine: { ...config.machine, disks: [{ diskId: disk.diskId, nbdUri: disk.nbdUri }] },
    });
    await driver.start({ name: config.machine.name });
  }
}
process.stdout.write(
  `${JSON.stringify({
    servingMs,
    disks: await dataPath.services.disk.list(),
    machines: await driver.list(),
  })}\n`,
);
process.once('SIGTERM', () => {
  void dataPath.close().then(() => process.exit(0));
});
