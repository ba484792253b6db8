import { stat, unlink } from 'node:fs/promises';
import net from 'node:net';
import { HavenError } from '../errors/index.ts';

/** Removes a Unix socket file nobody listens on any more; refuses one in use. */
export async function removeStaleSocket(path: string): Promise<void> {
  try {
    if (!(await stat(path)).isSocket()) {
      throw new HavenError('conflict', `'${path}' exists and is not a socket; refusing to replace it`, {
        path,
      });
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  const inUse = await new Promise<boolean>((done) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      done(true);
    });
    probe.once('error', () => done(false));
  });
  if (inUse) {
    throw new HavenError('conflict', `socket '${path}' is in use by another process`, { path });
  }
  await unlink(path);
}
