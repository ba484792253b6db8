import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startDataPath } from './data-path.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-data-path-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const start = (dataDir: string) =>
  startDataPath({ dataDir, replicationListen: { host: '127.0.0.1', port: 0 } });

test('a receiver started on a free port comes back on the same port after a restart (senders keep its address)', async () => {
  const dataDir = join(dir, 'same-port');
  const first = await start(dataDir);
  const address = first.replicationAddress;
  await first.close();
  const second = await start(dataDir);
  try {
    assert.equal(second.replicationAddress, address);
  } finally {
    await second.close();
  }
});

test('when another process holds the saved port, the receiver takes a free one and keeps that', async () => {
  const dataDir = join(dir, 'taken-port');
  const first = await start(dataDir);
  const port = Number(first.replicationAddress.split(':').at(-1));
  await first.close();
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
  try {
    const second = await start(dataDir);
    const moved = second.replicationAddress;
    await second.close();
    assert.notEqual(moved, `127.0.0.1:${port}`);
    const third = await start(dataDir);
    try {
      assert.equal(third.replicationAddress, moved);
    } finally {
      await third.close();
    }
  } finally {
    await new Promise((resolve) => squatter.close(resolve));
  }
});

test("servers' default ports give way to another process (a free one instead); ports the operator chose do not", async () => {
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  const taken = (squatter.address() as { port: number }).port;
  const servers = (freePortWhenTaken: boolean, nbdPort = taken) => ({
    listen: { host: '127.0.0.1', nbdPort, agentPort: taken },
    freePortWhenTaken,
    tlsHostname: 'primary.haven.test',
    redeemEnrolment: async () => {
      throw new Error('not in this test');
    },
  });
  try {
    const dataDir = join(dir, 'servers-ports');
    const path = await startDataPath({
      dataDir,
      replicationListen: { host: '127.0.0.1', port: 0 },
      viewAccessListen: null,
      servers: servers(true),
      log: () => {},
    });
    try {
      const endpoint = path.serverEndpoint!;
      assert.notEqual(endpoint.nbdPort, taken);
      assert.notEqual(endpoint.agentPort, taken);
      assert.equal(endpoint.agentPort, path.serverListen!.agentPort);
      assert.ok(path.capabilities.includes('server-link'));
    } finally {
      await path.close();
    }
    await assert.rejects(
      startDataPath({
        dataDir,
        replicationListen: { host: '127.0.0.1', port: 0 },
        viewAccessListen: null,
        // The agent's port taken: what started before it (the disk service) is closed again.
        servers: servers(false, 0),
        log: () => {},
      }),
      { code: 'EADDRINUSE' },
    );
  } finally {
    await new Promise((resolve) => squatter.close(resolve));
  }
});
