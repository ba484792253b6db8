/**
 * What a host keeps after enrolment: `host.json` in its data directory,
 * readable by its owner only (it holds the host secret).
 */
import { chmod, mkdir, open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { parseControlAddress } from '../control/index.ts';
import { HavenError } from '../errors/index.ts';
import { readOptionalText } from '../storage/optional-file.ts';

export const HOST_IDENTITY_FILE = 'host.json';

export interface HostIdentity {
  hostId: string;
  name: string;
  site: string;
  /** Shown once by the vault at enrolment; proves this host on the control channel. */
  hostSecret: string;
  /** The vault's control channel, "host:port". */
  controlAddress: string;
  /** The vault certificate's fingerprint, pinned at enrolment. */
  vaultFingerprint: string;
  apiUrl: string;
  enrolledAt: string;
}

const fields = [
  'hostId',
  'name',
  'site',
  'hostSecret',
  'controlAddress',
  'vaultFingerprint',
  'apiUrl',
  'enrolledAt',
] as const satisfies ReadonlyArray<keyof HostIdentity>;

export function hostIdentityPath(dataDir: string): string {
  return join(dataDir, HOST_IDENTITY_FILE);
}

/** The host's identity, or undefined if this data directory was never enrolled. */
export async function loadHostIdentity(dataDir: string): Promise<HostIdentity | undefined> {
  const file = hostIdentityPath(dataDir);
  const text = await readOptionalText(file);
  if (text === null) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new HavenError(
      'validation_failed',
      `${file} is not valid JSON; restore it or enrol the host again`,
      {
        file,
      },
    );
  }
  const record = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
  for (const field of fields) {
    if (typeof record[field] !== 'string' || record[field] === '') {
      throw new HavenError(
        'validation_failed',
        `${file} has no valid '${field}'; restore it or enrol the host again`,
        {
          file,
          field,
        },
      );
    }
  }
  parseControlAddress(record.controlAddress as string);
  return Object.fromEntries(fields.map((field) => [field, record[field]])) as unknown as HostIdentity;
}

/** Writes host.json atomically with mode 0600 (data directory 0700 if it is created). */
export async function saveHostIdentity(dataDir: string, identity: HostIdentity): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const file = hostIdentityPath(dataDir);
  const temp = `${file}.${process.pid}.tmp`;
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(identity, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  // The mode given to open() is masked by the umask; make sure.
  await chmod(temp, 0o600);
  await rename(temp, file);
}
