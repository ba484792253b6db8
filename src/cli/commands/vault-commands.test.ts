import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { spawnTs } from '../../testing/child-process.ts';

test('haven vault builds the portal when it is missing or stale, serves it, and its banner says where', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'haven-vault-portal-'));
  const vault = spawnTs('src/cli/main.ts', ['vault', '--data', dir, '--port', '0', '--control-port', '0']);
  try {
    // A build on a fresh checkout takes a while on a loaded machine.
    const { url } = await vault.firstJson<{ url: string }>(240_000);
    const end = Date.now() + 10_000;
    while (!/^Portal: /m.test(vault.output()) && Date.now() < end)
      await new Promise((r) => setTimeout(r, 50));
    assert.match(vault.output(), new RegExp(`^Portal: ${url}/$`, 'm'), vault.output());
    const page = await fetch(`${url}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<div id="root">/);
  } finally {
    vault.process.kill('SIGTERM');
    await vault.exited;
    await rm(dir, { recursive: true, force: true });
  }
});
