/**
 * The server agent's shell code without a guest: argument and config parsing
 * and the enrolment against a real TLS endpoint, under the host's busybox sh
 * and dash (the shells a server may run it with), with the host's openssl.
 * Debian: busybox, dash, openssl.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseServerReport } from '../host/server-links.ts';
import { selfSignedCertificate } from '../testing/self-signed-certificate.ts';
import { AgentEndpoint } from '../testing/server-agent-endpoint.ts';
import { SERVER_AGENT_SCRIPT } from './server-agent-script.ts';

const SCRIPT = fileURLToPath(SERVER_AGENT_SCRIPT);
const CONFIG = [
  'machine m-1',
  'name web-01',
  'nbd 127.0.0.1 10809 localhost',
  'agent 127.0.0.1 8443 localhost',
  'timeout 5',
  'writebehind 0',
  'report 10',
  'disk disk0 /dev/vda m-1.disk0 67108864',
];

/** The config the endpoint answers, its agent line naming the endpoint itself. */
const withAgent = (port: number): string[] =>
  CONFIG.map((line) => (line.startsWith('agent ') ? `agent 127.0.0.1 ${port} localhost` : line));

let root: string;
let caKey: string;
let caCert: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'haven-agent-sh-'));
  [caKey, caCert] = [join(root, 'ca.key'), join(root, 'ca.pem')];
  await selfSignedCertificate(caKey, caCert);
});
after(() => rm(root, { recursive: true, force: true }));

for (const shell of [['busybox', 'sh'], ['dash']] as const) {
  const name = shell.join(' ');
  // Asynchronous: the endpoint answering it runs in this process.
  const agent = (args: string[], dir: string) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(shell[0], [...shell.slice(1), SCRIPT, ...args], {
        env: { PATH: process.env.PATH, HAVEN_RUN_DIR: join(dir, 'run') },
        timeout: 60_000,
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d;
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d;
      });
      child.on('close', (status) => resolve({ status, stdout, stderr }));
    });

  describe(`haven-server-agent under ${name}`, () => {
    it('refuses incomplete arguments with its usage, and commands before enrolment', async () => {
      const dir = await mkdtemp(join(root, 'args-'));
      for (const args of [[], ['frobnicate'], ['enrol', '--agent', '127.0.0.1:1'], ['run', '--state-dir']]) {
        const r = await agent(args, dir);
        assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /^usage: haven-server-agent enrol/, args.join(' '));
      }
      const r = await agent(['status', '--state-dir', join(dir, 'none')], dir);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /not enrolled: no .*\/none\/server\.conf/);
      await writeFile(join(dir, 'server.conf'), 'machine m-1\n');
      const bad = await agent(['setup', '--state-dir', dir], dir);
      assert.equal(bad.status, 1);
      assert.match(bad.stderr, /server\.conf lacks a machine, nbd or agent line/);
    });

    it('enrols: a key that stays on the server, the host’s config and certificate; refusals say why', async () => {
      const endpoint = await AgentEndpoint.start({
        caKey,
        caCert,
        configLines: withAgent,
        machineId: 'm-1',
        token: 'secret-token',
      });
      const port = endpoint.port;
      const dir = await mkdtemp(join(root, 'enrol-'));
      const state = join(dir, 'state');
      const enrol = (token: string, ca = caCert) =>
        agent(
          [
            'enrol',
            '--agent',
            `127.0.0.1:${port}`,
            '--tls-hostname',
            'localhost',
            '--ca-file',
            ca,
            '--token',
            token,
            '--state-dir',
            state,
          ],
          dir,
        );
      try {
        const wrong = await enrol('not-the-token');
        assert.equal(wrong.status, 1);
        assert.match(
          wrong.stderr,
          /the host refused the enrolment \(HTTP 401\): enrolment token refused: unknown, used or expired/,
        );

        const ok = await enrol('secret-token');
        assert.equal(ok.status, 0, ok.stderr);
        assert.match(ok.stdout, /^enrolled as web-01 \(m-1\) with 127\.0\.0\.1:\d+; state in /);
        assert.equal(await readFile(join(state, 'server.conf'), 'utf8'), `${withAgent(port).join('\n')}\n`);
        assert.equal((await stat(join(state, 'tls/key.pem'))).mode & 0o777, 0o600);
        assert.equal(await readFile(join(state, 'tls/ca.pem'), 'utf8'), await readFile(caCert, 'utf8'));
        const subject = spawnSync(
          'openssl',
          ['x509', '-noout', '-subject', '-in', join(state, 'tls/cert.pem')],
          {
            encoding: 'utf8',
          },
        );
        assert.match(subject.stdout, /CN ?= ?m-1/);

        // The recovery environment's report of a failback, with the identity the enrolment left.
        const reported = await agent(
          [
            'failback-report',
            '--state-dir',
            state,
            'failed',
            '4096',
            '65536',
            '120',
            'cannot',
            'stop /dev/md0',
          ],
          dir,
        );
        assert.equal(reported.status, 0, reported.stderr);
        const last = endpoint.reports.at(-1)!;
        assert.equal(last.machine, 'm-1');
        assert.deepEqual(parseServerReport(last.body, '2026-01-01T00:00:00.000Z').failback, {
          phase: 'failed',
          copiedBytes: 4096,
          totalBytes: 65536,
          elapsedMs: 120,
          problem: 'cannot stop /dev/md0',
        });
        const badPhase = await agent(['failback-report', '--state-dir', state, 'later', '0', '0', '0'], dir);
        assert.equal(badPhase.status, 2);

        const again = await enrol('secret-token');
        assert.match(again.stderr, /HTTP 401/, 'the token works once');

        // Another CA: the host's certificate does not verify, nothing is sent.
        const [otherKey, otherCa] = [join(dir, 'other.key'), join(dir, 'other.pem')];
        await selfSignedCertificate(otherKey, otherCa);
        const mismatch = await enrol('secret-token', otherCa);
        assert.equal(mismatch.status, 1);
        assert.match(mismatch.stderr, /the host's certificate does not match .* for localhost/);
      } finally {
        await endpoint.close();
      }
      const gone = await enrol('secret-token');
      assert.equal(gone.status, 1);
      assert.match(gone.stderr, /cannot reach the host agent at 127\.0\.0\.1:\d+/);
    });

    it('status reports each configured array, and a missing one as degraded', async () => {
      const dir = await mkdtemp(join(root, 'status-'));
      await writeFile(
        join(dir, 'server.conf'),
        `${CONFIG.join('\n')}\ndisk disk1 /dev/vdb m-1.disk1 1048576\n`,
      );
      const r = await agent(['status', '--state-dir', dir], dir);
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.match(lines[0]!, /^hostname \S+$/);
      assert.deepEqual(lines.slice(1), [
        'version 1',
        'state running',
        // No md0/md1 on the build host: each array is out.
        'disk disk0 /dev/md0 - degraded - -',
        'disk disk1 /dev/md1 - degraded - -',
      ]);
    });
  });
}
