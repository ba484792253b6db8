/**
 * `haven servers` against a real vault and its two hosts (in process; the
 * CLI as a child process). The hosts' `servers.endpoint` is a double: the
 * host side of servers is not what this tests.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Embedded, startEmbedded } from '../../app/start-embedded.ts';
import type { Host, Machine } from '../../domain/model.ts';
import { SERVER_AGENT_SCRIPT } from '../../server-agent/server-agent-script.ts';
import { runHaven } from '../../testing/child-process.ts';
import { answerHostCalls, embeddedApi, embeddedCliConnection } from '../../testing/embedded-api.ts';
import { SAMPLE_SERVER_ENDPOINT } from '../../testing/sample-machine.ts';
import { until } from '../../testing/until.ts';
import { parseServerDisk } from './server-commands.ts';

const ENDPOINT = SAMPLE_SERVER_ENDPOINT;

let dir: string;
let up: Embedded;
const api = embeddedApi(() => up);
const conn = () => embeddedCliConnection(up);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-servers-cli-'));
  up = await startEmbedded({ dataDir: dir, port: 0, demo: false });
  await until('both hosts connected', async () => {
    const { body } = await api<{ hosts: Host[] }>('GET', '/hosts');
    return body.hosts.length === 2 && body.hosts.every((h) => h.status === 'connected');
  });
  answerHostCalls(up, (method) => (method === 'servers.endpoint' ? ENDPOINT : undefined));
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

  it("sets a server's BMC from a URL and a password file, never showing the password; removes it", async () => {
    const passwordFile = join(dir, 'bmc.pass');
    await writeFile(passwordFile, 'bmc-secret-db-03\n', { mode: 0o600 });
    const add = ['servers', 'add', 'db-03', '--site', 'primary', '--disk', 'disk0:/dev/sda:64M'];
    const alone = await runHaven([...add, '--bmc', 'ipmi://haven@10.0.9.23', ...conn()]);
    assert.equal(alone.code, 2, alone.stderr);
    assert.match(alone.stderr, /--bmc and --bmc-password-file go together/);
    const added = await runHaven([
      ...add,
      '--bmc',
      'ipmi://haven@10.0.9.23',
      '--bmc-password-file',
      passwordFile,
      ...conn(),
    ]);
    assert.equal(added.code, 0, added.stderr);
    const { body: machine } = await api<Machine>('GET', '/machines/db-03');
    assert.deepEqual(machine.server?.bmc, {
      protocol: 'ipmi',
      address: '10.0.9.23',
      port: 623,
      user: 'haven',
      cipherSuite: null,
    });
    assert.equal(
      await up.vault.context.store.serverBmcPasswords.get(machine.id),
      'bmc-secret-db-03',
      'the final line ending is not part of it',
    );

    const update = ['servers', 'update', 'db-03'];
    const typed = await runHaven([
      ...update,
      '--bmc',
      'ipmi://haven:pw@10.0.9.23',
      '--bmc-password-file',
      passwordFile,
      ...conn(),
    ]);
    assert.equal(typed.code, 2, typed.stderr);
    assert.match(typed.stderr, /--bmc: 'ipmi:\/\/haven:…@10\.0\.9\.23' holds a password/);
    const changed = await runHaven([
      ...update,
      '--bmc',
      'ipmi://admin@bmc-db03.oob:6230?cipher=3',
      '--bmc-password-file',
      passwordFile,
      ...conn(),
    ]);
    assert.equal(changed.code, 0, changed.stderr);
    assert.equal(
      changed.stdout,
      'server db-03: BMC ipmi://admin@bmc-db03.oob:6230?cipher=3 (its password stored)\n',
    );
    const shown = await runHaven(['machines', 'show', 'db-03', '--json', ...conn()]);
    assert.ok(!shown.stdout.includes('bmc-secret-db-03'), 'never shown');
    const neither = await runHaven([...update, ...conn()]);
    assert.equal(neither.code, 2, neither.stderr);
    assert.match(neither.stderr, /give either --bmc \(with --bmc-password-file\) or --no-bmc/);
    const removed = await runHaven([...update, '--no-bmc', ...conn()]);
    assert.equal(removed.stdout, 'server db-03: no BMC\n', removed.stderr);
    assert.equal(await up.vault.context.store.serverBmcPasswords.get(machine.id), undefined);
  });

  it('prints the server agent', async () => {
    const printed = await runHaven(['servers', 'agent-script']);
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(printed.stdout, await readFile(SERVER_AGENT_SCRIPT, 'utf8'));
  });
});
