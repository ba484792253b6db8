import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DataPath, startDataPath } from '../host/data-path.ts';
import type { ReplicationTarget } from '../host/host-services.ts';

/** One host's data path in a temp dir, for tests that replicate between sites in process. */
export interface TestSite {
  dir: string;
  path: DataPath;
  /** Where its receiver listens, as the vault would tell a sender. */
  target: ReplicationTarget;
}

export async function startTestSite(name: string): Promise<TestSite> {
  const dir = await mkdtemp(join(tmpdir(), `haven-site-${name}-`));
  const path = await startDataPath({
    dataDir: dir,
    replicationListen: { host: '127.0.0.1', port: 0 },
    senderPollMs: 2,
    storageFolders: [dir],
  });
  return {
    dir,
    path,
    target: { hostId: name, address: path.replicationAddress, fingerprint: path.replicationFingerprint },
  };
}
