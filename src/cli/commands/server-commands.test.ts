/**
 * `haven servers` against a real vault and its two hosts (in process; the
 * CLI as a child process). The hosts' `servers.endpoint` is a double: the
 * host side of servers is not what this tests.
 */
import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Embedded, startEmbedded } from '../../app/start-embedded.ts';
import type { Host, Machine } from '../../domain/model.ts';
import type { ServerEndpoint } from '../../host/host-services.ts';
import { runHaven } from '../../testing/child-process.ts';
import { embeddedApi } from '../../testing/embedded-api.ts';
import { until } from '../../testing/until.ts';
import { parseServerDisk, SERVER_AGENT_SCRIPT } from './server-commands.ts';

const ENDPOINT: ServerEndpoint = {
  address: '10.0.1.11',
  nbdPort: 10_810,
  agentPort: 8444,
  tlsHostname: 'primary.servers.haven',
  caCertPem: '-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n',
};

let dir: string;
let up: Embedded;
const api = embeddedApi(() => up);
const conn = () => [
  '--url',
  up.vault.url,
  '--token',
  up.adminToken,
  ...(up.vault.apiFingerprint ? ['--fingerprint', up.vault.apiFingerprint] : []),
];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-servers-cli-'));
  up = await startEmbedded({ dataDir: dir, port: 0, demo: false });
  await until('both hosts connected', async () => {
    const { body } = await api<{ hosts: Host[] }>('GET', '/hosts');
    return body.hosts.length === 2 && body.hosts.every((h) => h.status === 'connected');
  });
  const gateway = up.vault.context.hosts;
  const call = gateway.call.bind(gateway);
  gateway.call = (async (
    hostId: string,
    method: string,
    params?: unknown,
    options?: { timeoutMs?: number },
  ) =>
    method === 'servers.endpoint' ? ENDPOINT : call(hostId, method, params, options)) as typeof gateway.call;
});
after(async () => {
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('haven servers', () => {
  it('reads --disk ID:DEVICE:SIZE', () => {
    assert.deepEqual(parseServerDisk('disk0:/dev/sda:64M'), {
      id: 'disk0',
      device: '/dev/sda',
      sizeBytes: 64 << 20,
    });
    assert.throws(() => parseServerDisk('/dev/sda:64M'), /not ID:DEVICE:SIZE/);
    assert.throws(() => parseServerDisk('disk0:/dev/sda:lots'), /size 'lots'/);
  });

  it('adds a server: the token once, the commands to run, the write ordering; a new enrolment; the list', async () => {
    const added = await runHaven([
      'servers',
      'add',
      'db-01',
      '--site',
      'primary',
      '--disk',
      'disk0:/dev/sda:64M',
      '--write-behind',
      '128',
      '--cpus',
      '2',
      '--memory',
      '2G',
      '--network',
      'lan',
      ...conn(),
    ]);
    assert.equal(added.code, 0, added.stderr);
    const token = /^ {2}(hvs_\S+)$/m.exec(added.stdout)?.[1];
    assert.ok(token, added.stdout);
    assert.match(added.stdout, /writes: write-behind \(up to 128 writes\).*may lack up to 128 writes/);
    assert.match(
      added.stdout,
      /cat > \/etc\/haven\/server-ca\.pem <<'HAVEN_SERVER_CA'\n-----BEGIN CERTIFICATE-----/,
    );
    assert.ok(
      added.stdout.includes(
        `haven-server-agent enrol --agent 10.0.1.11:8444 --tls-hostname primary.servers.haven --ca-file /etc/haven/server-ca.pem --token ${token}`,
      ),
      added.stdout,
    );
    const { body: machine } = await api<Machine>('GET', '/machines/db-01');
    assert.deepEqual(
      machine.recoverySettings.nics.map((n) => n.network),
      ['lan'],
    );
    assert.equal(machine.recoverySettings.memoryMiB, 2048);

    const bad = await runHaven([
      'servers',
      'add',
      'db-02',
      '--site',
      'primary',
      '--disk',
      'disk0:sda:1M',
      ...conn(),
    ]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /disks\.0\.device/);

    const again = await runHaven(['servers', 'enrolment', 'db-01', ...conn()]);
    assert.equal(again.code, 0, again.stderr);
    const second = /^ {2}(hvs_\S+)$/m.exec(again.stdout)?.[1];
    assert.ok(second && second !== token, again.stdout);

    const listed = await runHaven(['servers', 'list', ...conn()]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /db-01\s+unprotected\s+unknown\s+not yet\s+not replicating/);
    assert.ok(!listed.stdout.includes(second), 'tokens are shown once');
  });

  it('prints the server agent, or says clearly that this installation has none', async () => {
    const present = await access(SERVER_AGENT_SCRIPT).then(
      () => true,
      () => false,
    );
    if (!present) {
      const missing = await runHaven(['servers', 'agent-script']);
      assert.equal(missing.code, 1);
      assert.match(
        missing.stderr,
        /server agent is not part of this installation \(no .*haven-server-agent\.sh\)/,
      );
      // A placeholder, for this test only, where the agent will be.
      await mkdir(dirname(SERVER_AGENT_SCRIPT), { recursive: true });
      await writeFile(SERVER_AGENT_SCRIPT, '#!/bin/sh\n# placeholder\n');
    }
    try {
      const printed = await runHaven(['servers', 'agent-script']);
      assert.equal(printed.code, 0, printed.stderr);
      assert.match(printed.stdout, /^#!\/bin\/sh/);
    } finally {
      if (!present) await rm(dirname(SERVER_AGENT_SCRIPT), { recursive: true, force: true });
    }
  });
});
