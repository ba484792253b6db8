import { execFile } from 'node:child_process';
import { userInfo } from 'node:os';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Who a script runs as, and why that user (kept in the run record). */
export interface ScriptUser {
  name: string;
  /** Set when the vault switches to this user (it runs as root); undefined: the vault's own user. */
  uid?: number;
  gid?: number;
  note: string;
}

export const DEFAULT_SCRIPT_USER = 'haven-script';

async function lookup(name: string): Promise<{ uid: number; gid: number } | null> {
  try {
    const { stdout } = await run('getent', ['passwd', name]);
    const fields = stdout.trim().split(':');
    const uid = Number(fields[2]);
    const gid = Number(fields[3]);
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
  } catch {
    return null;
  }
}

/**
 * The user scripts run as. A vault running as root never runs them as root:
 * it uses the dedicated `preferred` user, creating it as a system user with no
 * home and no login shell on first use, or `nobody` when it cannot. A vault
 * that is not root cannot switch users: scripts run as its own user.
 */
export async function scriptUser(preferred: string = DEFAULT_SCRIPT_USER): Promise<ScriptUser> {
  if (process.getuid?.() !== 0) {
    return {
      name: userInfo().username,
      note: "the vault does not run as root, so scripts run as the vault's own user",
    };
  }
  const existing = await lookup(preferred);
  if (existing && existing.uid !== 0) return { name: preferred, ...existing, note: 'dedicated script user' };
  let why = existing ? `'${preferred}' is uid 0` : '';
  if (!existing) {
    try {
      await run('useradd', [
        '--system',
        '--user-group',
        '--no-create-home',
        '--home-dir',
        '/nonexistent',
        '--shell',
        '/usr/sbin/nologin',
        '--comment',
        'Haven plan scripts',
        preferred,
      ]);
    } catch (error) {
      why = `useradd failed: ${(error as { stderr?: string }).stderr?.trim() || String(error)}`;
    }
    // Found also when another run created it at the same moment (useradd then fails).
    const created = await lookup(preferred);
    if (created && created.uid !== 0)
      return { name: preferred, ...created, note: 'dedicated script user (created by the vault)' };
  }
  const nobody = await lookup('nobody');
  if (!nobody || nobody.uid === 0)
    throw new Error(`No unprivileged user to run scripts as: ${why}; and there is no 'nobody' user`);
  return { name: 'nobody', ...nobody, note: `'${preferred}' could not be used (${why}): ran as nobody` };
}
