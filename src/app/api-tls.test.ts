import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../client/api-client.ts';
import { enrol } from '../host/enrol.ts';
import { runHaven, spawnTs } from '../testing/child-process.ts';
import { type RunningVault, startVault } from './start-vault.ts';

const WRONG = Array.from({ length: 32 }, () => 'AB').join(':');

let dir: string;
let vault: RunningVault;
let admin: string;
let fingerprint: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-tls-'));
  vault = await startVault({ dataDir: join(dir, 'vault'), port: 0, controlPort: 0, apiTls: 'self-signed' });
  admin = vault.adminToken!;
  fingerprint = vault.apiFingerprint!;
  await new ApiClient({ url: vault.url, token: admin, fingerprint }).post('/sites', {
    name: 'dc1',
    role: 'primary',
  });
});

after(async () => {
  await vault.stop();
  await rm(dir, { recursive: true, force: true });
});

async function enrolmentToken(hostName: string): Promise<string> {
  const client = new ApiClient({ url: vault.url, token: admin, fingerprint });
  return (await client.post<{ token: string }>('/enrolment-tokens', { siteId: 'dc1', hostName })).token;
}

describe('REST API over TLS', () => {
  it('serves https with the vault’s certificate; plain HTTP is not answered', async () => {
    assert.match(vault.url, /^https:\/\//);
    assert.equal(fingerprint, vault.fingerprint);
    const saved = JSON.parse(await readFile(join(dir, 'vault', 'vault.json'), 'utf8'));
    assert.equal(saved.apiFingerprint, fingerprint);
    await assert.rejects(fetch(`${vault.url.replace('https:', 'http:')}/api/v1/health`));
  });

  it('the client pins the fingerprint and refuses a vault presenting another certificate', async () => {
    const good = new ApiClient({ url: vault.url, token: admin, fingerprint });
    assert.equal((await good.get<{ status: string }>('/health')).status, 'ok');
    const wrong = new ApiClient({ url: vault.url, token: admin, fingerprint: WRONG });
    await assert.rejects(wrong.get('/health'), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'unauthenticated');
      assert.match(error.message, /presented certificate fingerprint .* not the pinned/);
      return true;
    });
  });

  it('the CLI pins --fingerprint, saves it under its data directory for later calls, and refuses a wrong one', async () => {
    const cliData = join(dir, 'cli');
    const conn = ['--url', vault.url, '--token', admin, '--data', cliData];
    const none = await runHaven(['hosts', 'list', ...conn]);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /No fingerprint for the vault/);

    const first = await runHaven(['hosts', 'list', '--json', '--fingerprint', fingerprint, ...conn]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(((await stat(join(cliData, 'cli.json'))).mode & 0o777).toString(8), '600');
    const later = await runHaven(['hosts', 'list', '--json', ...conn]);
    assert.equal(later.code, 0, later.stderr);

    const wrong = await runHaven(['hosts', 'list', '--fingerprint', WRONG, ...conn]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /presented certificate fingerprint/);
  });

  it('a host enrols only with the pinned vault: a wrong fingerprint sends nothing (the token still works)', async () => {
    const token = await enrolmentToken('kvm-pinned');
    const options = { apiUrl: vault.url, token, name: 'kvm-pinned', site: 'dc1' };
    await assert.rejects(enrol({ ...options, dataDir: join(dir, 'h0') }), {
      code: 'bad_request',
      message: /--fingerprint is required/,
    });
    await assert.rejects(enrol({ ...options, dataDir: join(dir, 'h1'), expectedFingerprint: WRONG }), {
      code: 'unauthenticated',
    });
    const identity = await enrol({ ...options, dataDir: join(dir, 'h2'), expectedFingerprint: fingerprint });
    assert.equal(identity.vaultFingerprint, vault.fingerprint);
  });

  for (const via of ['token-file', 'env'] as const) {
    it(`haven host enrols with the token from ${via === 'env' ? 'HAVEN_ENROL_TOKEN' : '--token-file'}, never on its command line`, async () => {
      const name = `kvm-${via}`;
      const token = await enrolmentToken(name);
      const tokenFile = join(dir, `${name}.token`);
      await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
      const args = [
        'host',
        ...['--vault', vault.url, '--fingerprint', fingerprint, '--name', name, '--site', 'dc1'],
        ...['--data', join(dir, name), '--replication-listen', '127.0.0.1:0'],
        ...(via === 'token-file' ? ['--token-file', tokenFile] : []),
      ];
      const host = spawnTs('src/cli/main.ts', args, via === 'env' ? { HAVEN_ENROL_TOKEN: token } : {});
      try {
        const started = await host.firstJson<{ hostId: string; name: string }>();
        assert.equal(started.name, name);
        assert.ok(!host.process.spawnargs.join(' ').includes(token), 'the token is on the command line');
        const known = await vault.context.store.hosts.get(started.hostId);
        assert.equal(known?.name, name);
      } finally {
        host.process.kill('SIGTERM');
        await host.exited;
      }
    });
  }
});
