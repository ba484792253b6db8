import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startVault } from './start-vault.ts';

test('a vault whose API port is in use fails to start, naming it, and leaves nothing running', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'haven-port-'));
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const { port } = holder.address() as { port: number };
  try {
    // It used to wait forever for a 'listening' that never came.
    await assert.rejects(startVault({ dataDir: dir, port, controlPort: 0 }), { code: 'EADDRINUSE' });
    // Nothing of the failed start is left: a second start on the same data, on a free port, works.
    const vault = await startVault({ dataDir: dir, port: 0, controlPort: 0 });
    await vault.stop();
  } finally {
    holder.close();
    await rm(dir, { recursive: true, force: true });
  }
});
