import { gunzipSync, zstdDecompressSync } from 'node:zlib';
import { HavenError } from '../errors/index.ts';

const NEWC_MAGIC = ['070701', '070702'];
const NEWC_HEADER = 110;
const TRAILER = 'TRAILER!!!';

/**
 * The paths in an initramfs: cpio newc archives one after the other, each
 * raw (Debian's early microcode) or gzip- or zstd-compressed, as the kernel
 * unpacks them. Another compression is an error naming it.
 */
export function initramfsPaths(data: Buffer): string[] {
  const paths: string[] = [];
  let at = 0;
  while (at < data.length) {
    // Archives are padded to 4 bytes, and some writers pad more with zeros.
    if (data[at] === 0) {
      at++;
      continue;
    }
    const magic = data.subarray(at, at + 4);
    if (magic[0] === 0x1f && magic[1] === 0x8b) {
      // A gzip stream runs to the end of the file: concatenated members inflate as one.
      paths.push(...initramfsPaths(gunzipSync(data.subarray(at))));
      return paths;
    }
    if (magic.readUInt32LE(0) === 0xfd2fb528) {
      paths.push(...initramfsPaths(zstdDecompressSync(data.subarray(at))));
      return paths;
    }
    const kind = data.toString('latin1', at, at + 6);
    if (!NEWC_MAGIC.includes(kind)) {
      throw new HavenError(
        'bad_request',
        `initramfs holds an archive it cannot read at byte ${at} (magic ${magic.toString('hex')}); newc cpio, gzip or zstd expected`,
        {
          offset: at,
        },
      );
    }
    at = readNewc(data, at, paths);
  }
  return paths;
}

/** Reads one newc archive from `at` into `paths`; returns the offset after its trailer. */
function readNewc(data: Buffer, start: number, paths: string[]): number {
  let at = start;
  while (at + NEWC_HEADER <= data.length) {
    if (!NEWC_MAGIC.includes(data.toString('latin1', at, at + 6))) {
      throw new HavenError('bad_request', `initramfs cpio entry at byte ${at} has no newc magic`, {
        offset: at,
      });
    }
    const field = (i: number) =>
      Number.parseInt(data.toString('latin1', at + 6 + i * 8, at + 14 + i * 8), 16);
    const fileSize = field(6);
    const nameSize = field(11);
    const name = data.toString('utf8', at + NEWC_HEADER, at + NEWC_HEADER + nameSize - 1);
    const dataStart = align4(at + NEWC_HEADER + nameSize);
    at = align4(dataStart + fileSize);
    if (name === TRAILER) return at;
    paths.push(name.replace(/^\.?\//, ''));
  }
  throw new HavenError('bad_request', 'initramfs cpio archive ends without its trailer', {});
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

/** Kernel module names (virtio_blk for virtio-blk.ko.zst) of the .ko files among `paths`. */
export function initramfsModules(paths: readonly string[]): string[] {
  const modules = new Set<string>();
  for (const path of paths) {
    const match = /([^/]+)\.ko(\.(xz|zst|gz))?$/.exec(path);
    if (match) modules.add(match[1]!.replaceAll('-', '_'));
  }
  return [...modules].sort();
}
