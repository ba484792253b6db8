import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { scriptUser } from './script-user.ts';

const run = promisify(execFile);

describe('script user (as root)', { skip: process.getuid?.() !== 0 && 'needs root' }, () => {
  it('creates the dedicated system user on first use, with no login shell, and reuses it', async () => {
    const name = `haven-su-${process.pid}`;
    try {
      const first = await scriptUser(name);
      assert.equal(first.name, name);
      assert.ok(first.uid! > 0 && first.gid! > 0);
      assert.match(first.note, /created by the vault/);
      const { stdout } = await run('getent', ['passwd', name]);
      assert.match(stdout, /:\/nonexistent:\/usr\/sbin\/nologin\n$/);
      const again = await scriptUser(name);
      assert.deepEqual([again.uid, again.note], [first.uid, 'dedicated script user']);
    } finally {
      await run('userdel', [name]).catch(() => undefined);
    }
  });

  it('falls back to nobody when the user cannot be created, and says why', async () => {
    const user = await scriptUser('not a valid name!');
    assert.equal(user.name, 'nobody');
    assert.ok(user.uid! > 0);
    assert.match(user.note, /'not a valid name!' could not be used \(useradd failed: .*\): ran as nobody/);
  });
});
