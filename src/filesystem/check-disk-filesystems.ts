import { open } from 'node:fs/promises';
import { HavenError } from '../errors/index.ts';
import { checkExtFilesystem } from './ext-filesystem-check.ts';
import { type FilesystemSignature, identifyFilesystem, SIGNATURE_BYTES } from './filesystem-signature.ts';
import { type PartitionTableType, readPartitionTable } from './partition-table.ts';
import { checkXfsFilesystem } from './xfs-filesystem-check.ts';

/** Where a filesystem is: a whole disk (no partition) or one of its partitions. */
export interface FilesystemLocation {
  diskId: string;
  partition: { number: number; table: PartitionTableType; typeCode: string } | null;
  offsetBytes: number;
  sizeBytes: number;
}

/** Never 'passed' for what was not checked: a filesystem Haven cannot check here is 'not-checked'. */
export type FilesystemCheckResult = 'passed' | 'failed' | 'not-checked';

export interface FilesystemCheck extends FilesystemSignature {
  location: FilesystemLocation;
  result: FilesystemCheckResult;
  /** Why it failed or was not checked; null when it passed. */
  reason: string | null;
  /** Its journal (ext) or log (XFS) needed recovery and was replayed into the overlay first. */
  journalReplayed: boolean;
  /** What the checker printed, its start and end when long; empty when no tool ran. */
  evidence: string;
  evidenceTruncated: boolean;
  durationMs: number;
}

export interface DiskToCheck {
  diskId: string;
  /** The disk as a file (the view's export through nbdfuse); checks with a journal to replay write into it. */
  file: string;
  sizeBytes: number;
  /** Aborts at the check's time limit: the running tool is killed, what is left is not checked. */
  signal: AbortSignal;
  /** Said in the reason of what the time limit stopped. */
  timeoutMs: number;
}

const NOT_CHECKABLE: Partial<Record<FilesystemSignature['type'], string>> = {
  swap: 'swap space holds no filesystem to check',
  'lvm2-member':
    'an LVM2 physical volume: Haven does not activate volume groups on the recovery host, so its logical volumes are not checked',
  luks: 'encrypted with LUKS: the recovery host holds no key to open it',
  vfat: 'Haven has no checker for vfat filesystems',
  ntfs: 'Haven has no checker for NTFS filesystems',
  unknown: 'no filesystem signature Haven knows (ext2/3/4, XFS, swap, LVM2, LUKS, vfat, NTFS)',
};

/**
 * Checks every filesystem of a disk without booting it: the whole disk when
 * it holds one, else each partition of its MBR or GPT table. ext2/3/4 with
 * e2fsck, XFS with xfs_repair where installed, each after its journal is
 * replayed; anything else is reported not checked, with the reason.
 */
export async function checkDiskFilesystems(disk: DiskToCheck): Promise<FilesystemCheck[]> {
  const handle = await open(disk.file, 'r');
  const read = async (offset: number, length: number) => {
    const buffer = Buffer.alloc(Math.max(0, Math.min(length, disk.sizeBytes - offset)));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
    return buffer.subarray(0, bytesRead);
  };
  let locations: Array<{ location: FilesystemLocation; signature: FilesystemSignature }>;
  try {
    const whole = identifyFilesystem(await read(0, SIGNATURE_BYTES));
    const partitions = whole.type === 'unknown' ? await readPartitionTable(read, disk.sizeBytes) : null;
    if (partitions === null) {
      const location = { diskId: disk.diskId, partition: null, offsetBytes: 0, sizeBytes: disk.sizeBytes };
      locations = [{ location, signature: whole }];
    } else {
      locations = [];
      for (const p of partitions) {
        locations.push({
          location: {
            diskId: disk.diskId,
            partition: { number: p.number, table: p.table, typeCode: p.typeCode },
            offsetBytes: p.offsetBytes,
            sizeBytes: p.sizeBytes,
          },
          signature: identifyFilesystem(await read(p.offsetBytes, Math.min(SIGNATURE_BYTES, p.sizeBytes))),
        });
      }
    }
  } finally {
    await handle.close();
  }
  const checks: FilesystemCheck[] = [];
  for (const { location, signature } of locations) checks.push(await checkOne(disk, location, signature));
  return checks;
}

async function checkOne(
  disk: DiskToCheck,
  location: FilesystemLocation,
  signature: FilesystemSignature,
): Promise<FilesystemCheck> {
  const started = performance.now();
  const report = (
    result: FilesystemCheckResult,
    reason: string | null,
    run: { journalReplayed?: boolean; output?: string; outputTruncated?: boolean } = {},
  ): FilesystemCheck => ({
    ...signature,
    location,
    result,
    reason,
    journalReplayed: run.journalReplayed ?? false,
    evidence: run.output ?? '',
    evidenceTruncated: run.outputTruncated ?? false,
    durationMs: Math.round(performance.now() - started),
  });
  const timedOut = `the check's time limit of ${disk.timeoutMs} ms was reached`;
  if (disk.signal.aborted) return report('not-checked', `${timedOut} before this filesystem was checked`);
  try {
    if (signature.type === 'ext2' || signature.type === 'ext3' || signature.type === 'ext4') {
      const target = location.offsetBytes === 0 ? disk.file : `${disk.file}?offset=${location.offsetBytes}`;
      const ext = await checkExtFilesystem(target, disk.signal);
      if (ext.aborted) return report('not-checked', `${timedOut} while e2fsck ran`, ext);
      if (ext.clean) return report('passed', null, ext);
      return report(
        'failed',
        ext.replayFailed
          ? `its journal could not be replayed (e2fsck exit code ${ext.exitCode})`
          : e2fsckVerdict(ext.exitCode),
        ext,
      );
    }
    if (signature.type === 'xfs') {
      const xfs = await checkXfsFilesystem({ ...disk, ...location });
      if (xfs.aborted) return report('not-checked', `${timedOut} while xfs_repair ran`, xfs);
      if (xfs.clean) return report('passed', null, xfs);
      return report('failed', xfs.reason, xfs);
    }
  } catch (error) {
    if (error instanceof HavenError && error.code === 'not_available') {
      const install = error.details.install;
      return report(
        'not-checked',
        `${error.message}${typeof install === 'string' ? ` (install ${install})` : ''}`,
      );
    }
    throw error;
  }
  return report('not-checked', NOT_CHECKABLE[signature.type] ?? `Haven has no checker for ${signature.type}`);
}

/** e2fsck's exit code is a sum of flags; with -n only these two mean something. */
function e2fsckVerdict(exitCode: number | null): string {
  const said: string[] = [];
  if (exitCode !== null && (exitCode & 4) !== 0) said.push('errors left uncorrected');
  if (exitCode !== null && (exitCode & 8) !== 0) said.push('it could not finish the check');
  if (said.length === 0) said.push('not clean');
  return `e2fsck -fn: ${said.join(', and ')} (exit code ${exitCode})`;
}
