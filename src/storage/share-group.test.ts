import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { HavenError } from '../errors/index.ts';
import { checkGroupCanReach } from './share-group.ts';

test('a share group that cannot search a folder on the way is refused, naming the folder', async () => {
  const root = await mkdtemp(join(tmpdir(), 'haven-reach-'));
  try {
    const socket = join(root, 'data', 'run', 'disks.sock');
    await mkdir(join(root, 'data', 'run'), { recursive: true });
    await writeFile(socket, '');
    // A group nobody's folders here belong to: only "others" bits count.
    const group = { name: 'haven-test-nobody', gid: 65_000 };
    await chmod(root, 0o755);
    await chmod(join(root, 'data'), 0o711);
    await chmod(join(root, 'data', 'run'), 0o700);
    await assert.rejects(checkGroupCanReach(socket, group), (error: HavenError) => {
      assert.equal(error.code, 'validation_failed');
      assert.ok(error.message.includes(`folder '${join(root, 'data', 'run')}' (mode 700)`), error.message);
      return true;
    });
    await chmod(join(root, 'data', 'run'), 0o701);
    await checkGroupCanReach(socket, group);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
