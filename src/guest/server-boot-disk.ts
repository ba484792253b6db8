import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HavenError } from '../errors/index.ts';
import { SECTOR_BYTES, writeMbr } from '../filesystem/partition-table.ts';
import { defaultGuestCacheDir, filesArchive, type GuestImage } from './build-guest-image.ts';
import { formatDataDisk } from './data-disk.ts';
import { cachedDeb, libraryClosure } from './debian-packages.ts';
import { type GuestSettings, guestCommandLine } from './guest-command-line.ts';
import { runToolOrThrow } from './run-tool.ts';

const MiB = 1024 * 1024;

/**
 * The server guest's own disk, BIOS-bootable: an MBR with syslinux's boot
 * code, partition 1 (active) the system (ext4 `haven-system`: kernel,
 * initramfs, extlinux, /etc/fstab and the server agent's state in
 * /etc/haven, which a reboot or power loss keeps), partition 2 the data (ext4
 * `haven-data`, the records). The last MiBs belong to no partition: md's
 * metadata 1.0 and its bitmap go there when the whole disk is mirrored, so
 * the member (and its replica) still starts with the plain partition table.
 */
export const SERVER_BOOT_DISK = {
  sizeBytes: 96 * MiB,
  system: { offsetBytes: 1 * MiB, sizeBytes: 32 * MiB, label: 'haven-system', partition: 1 },
  data: { offsetBytes: 33 * MiB, sizeBytes: 61 * MiB, label: 'haven-data', partition: 2 },
} as const;

export interface ServerBootDisk {
  /** The cached template: copy it (copyServerBootDisk), never boot it. */
  template: string;
  /** extlinux and syslinux-common, as name=version. */
  packages: string[];
  cacheKey: string;
  cached: boolean;
}

/** Bump when the layout or the boot config changes in a way the hashed inputs do not show. */
const LAYOUT_VERSION = 2;
const BOOT_LOADER_PACKAGES = ['extlinux', 'syslinux-common'];
const EXTLINUX_DIR = '/boot/extlinux';
const SITE_INITRD = '/boot/site.gz';

/**
 * Why extlinux and not GRUB: its boot code, installer and config are three
 * files from two Debian packages, installed from a loop mount in a second,
 * and it reads ext4 itself; GRUB needs grub-install's module set and a
 * generated config for the same result.
 *
 * Builds the template from a server-variant guest image, or returns the
 * cached one (named by the image's key and the boot loader's versions).
 * Needs root: the partitions are loop-mounted to format them and to install
 * extlinux.
 */
export async function buildServerBootDisk(
  image: GuestImage,
  options: { cacheDir?: string; log?: (message: string) => void } = {},
): Promise<ServerBootDisk> {
  if (image.variant !== 'server') {
    throw new HavenError(
      'validation_failed',
      `the server boot disk needs the server guest image, not '${image.variant}'`,
      {
        field: 'variant',
        allowed: ['server'],
      },
    );
  }
  const cacheDir = options.cacheDir ?? defaultGuestCacheDir();
  const log = options.log ?? (() => {});
  const packages = (await libraryClosure(cacheDir, BOOT_LOADER_PACKAGES, log)).filter((p) =>
    BOOT_LOADER_PACKAGES.includes(p.name),
  );
  const versions = packages.map((p) => `${p.name}=${p.version}`).sort();
  const cacheKey = createHash('sha256')
    .update(
      `layout ${LAYOUT_VERSION}\0image ${image.cacheKey}\0${versions.join(',')}\0${JSON.stringify(SERVER_BOOT_DISK)}`,
    )
    .digest('hex')
    .slice(0, 16);
  const entry = join(cacheDir, `server-disk-${cacheKey}`);
  const template = join(entry, 'disk.img');
  try {
    await open(template, 'r').then((f) => f.close());
    return { template, packages: versions, cacheKey, cached: true };
  } catch {
    // Not built yet.
  }
  await mkdir(cacheDir, { recursive: true });
  const work = join(cacheDir, `.build-disk-${cacheKey}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(work);
  try {
    const root = join(work, 'root');
    for (const pkg of packages) {
      await runToolOrThrow('dpkg', ['-x', await cachedDeb(cacheDir, pkg, work, log), root], {
        debianPackage: 'dpkg',
      });
    }
    const out = join(work, 'out');
    await mkdir(out);
    const disk = join(out, 'disk.img');
    const file = await open(disk, 'w');
    try {
      await file.truncate(SERVER_BOOT_DISK.sizeBytes);
      const mbr = Buffer.alloc(SECTOR_BYTES);
      // syslinux's MBR code (440 bytes) loads the active partition's boot sector.
      (await readFile(join(root, 'usr/lib/syslinux/mbr/mbr.bin'))).copy(mbr, 0, 0, 440);
      const { system, data } = SERVER_BOOT_DISK;
      writeMbr(mbr, [
        {
          firstSector: system.offsetBytes / SECTOR_BYTES,
          sectors: system.sizeBytes / SECTOR_BYTES,
          type: 0x83,
          active: true,
        },
        { firstSector: data.offsetBytes / SECTOR_BYTES, sectors: data.sizeBytes / SECTOR_BYTES, type: 0x83 },
      ]);
      await file.write(mbr, 0, SECTOR_BYTES, 0);
    } finally {
      await file.close();
    }
    log('formatting the data partition');
    await withLoop(disk, SERVER_BOOT_DISK.data, (device) => formatDataDisk(device));
    log('installing the system partition and extlinux');
    await withLoop(disk, SERVER_BOOT_DISK.system, async (device) => {
      await runToolOrThrow(
        'mkfs.ext4',
        [
          '-q',
          '-F',
          '-L',
          SERVER_BOOT_DISK.system.label,
          '-E',
          'lazy_itable_init=0,lazy_journal_init=0',
          device,
        ],
        { debianPackage: 'e2fsprogs' },
      );
      const mnt = join(work, 'mnt');
      await mkdir(mnt);
      await runToolOrThrow('mount', [device, mnt], { debianPackage: 'mount' });
      try {
        await mkdir(join(mnt, EXTLINUX_DIR), { recursive: true });
        await mkdir(join(mnt, 'etc'));
        await copyFile(image.kernel, join(mnt, 'boot/vmlinuz'));
        await copyFile(image.initramfs, join(mnt, 'boot/initramfs.gz'));
        await writeFile(join(mnt, EXTLINUX_DIR, 'extlinux.conf'), extlinuxConfig({}, [], false));
        await writeFile(join(mnt, 'etc/fstab'), fstab());
        // extlinux reads the loop device's offset and writes it into the boot sector.
        await runToolOrThrow(join(root, 'usr/bin/extlinux'), ['--install', join(mnt, EXTLINUX_DIR)]);
      } finally {
        await runToolOrThrow('umount', [mnt], { debianPackage: 'mount' });
      }
    });
    await writeFile(join(out, 'manifest.json'), `${JSON.stringify({ packages: versions }, null, 2)}\n`);
    try {
      await rename(out, entry);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Another process finished the same build first; its entry is identical.
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  log(`built server boot disk ${template}`);
  return { template, packages: versions, cacheKey, cached: false };
}

/**
 * Copies the template to `dest` (sparse) and writes what this server's boots
 * take into its system partition: the kernel command line (haven.* settings,
 * see guest-init.sh) and `files` as a second initrd (e.g. /etc/haven-onboard,
 * the enrolment an operator would type, which the first boot runs), as a real
 * server keeps its configuration on its own disk. The replica carries them too.
 */
export async function copyServerBootDisk(
  disk: Pick<ServerBootDisk, 'template'>,
  dest: string,
  boot: {
    guest?: GuestSettings;
    cmdline?: readonly string[];
    files?: Readonly<Record<string, string | Uint8Array>>;
  } = {},
): Promise<void> {
  await runToolOrThrow('cp', ['--sparse=always', '--reflink=auto', disk.template, dest]);
  const work = `${dest}.boot-${randomBytes(4).toString('hex')}`;
  await mkdir(work);
  try {
    const config = join(work, 'extlinux.conf');
    const hasFiles = boot.files !== undefined && Object.keys(boot.files).length > 0;
    await writeFile(config, extlinuxConfig(boot.guest ?? {}, boot.cmdline ?? [], hasFiles));
    const requests = [`rm ${EXTLINUX_DIR}/extlinux.conf`, `write ${config} ${EXTLINUX_DIR}/extlinux.conf`];
    if (hasFiles) {
      await filesArchive(boot.files!, join(work, 'site.gz'));
      requests.push(`write ${join(work, 'site.gz')} ${SITE_INITRD}`);
    }
    await writeFile(join(work, 'requests'), `${requests.join('\n')}\n`);
    const result = await runToolOrThrow(
      'debugfs',
      ['-w', '-f', join(work, 'requests'), `${dest}?offset=${SERVER_BOOT_DISK.system.offsetBytes}`],
      { debianPackage: 'e2fsprogs' },
    );
    // debugfs reports a failed request on stderr and still exits 0.
    const failed = result.stderr.split('\n').find((l) => /: (File not found|Could not|.*error)/i.test(l));
    if (failed)
      throw new HavenError('internal', `debugfs could not configure the server disk ${dest}: ${failed}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The boot loader's config: the test guest's command line (the same words a
 * direct kernel boot gets), the root filesystem by label, never by an md
 * device, and the data partition.
 */
function extlinuxConfig(guest: GuestSettings, cmdline: readonly string[], siteInitrd: boolean): string {
  const append = guestCommandLine(guest, [
    `root=LABEL=${SERVER_BOOT_DISK.system.label}`,
    `haven.datapart=${SERVER_BOOT_DISK.data.partition}`,
    `haven.statepart=${SERVER_BOOT_DISK.system.partition}`,
    ...cmdline,
  ]);
  return [
    'SERIAL 0 115200',
    'DEFAULT haven',
    'TIMEOUT 0',
    'LABEL haven',
    '  LINUX /boot/vmlinuz',
    `  INITRD /boot/initramfs.gz${siteInitrd ? `,${SITE_INITRD}` : ''}`,
    `  APPEND ${append}`,
    '',
  ].join('\n');
}

/** By label: a VM that boots the replica has no md array, and needs none. */
function fstab(): string {
  return [
    `LABEL=${SERVER_BOOT_DISK.system.label} / ext4 defaults 0 1`,
    `LABEL=${SERVER_BOOT_DISK.data.label} /data ext4 defaults 0 2`,
    '',
  ].join('\n');
}

/** Runs `use` with a loop device over one partition of `disk`, detached afterwards. */
async function withLoop<T>(
  disk: string,
  partition: { offsetBytes: number; sizeBytes: number },
  use: (device: string) => Promise<T>,
): Promise<T> {
  const device = (
    await runToolOrThrow(
      'losetup',
      [
        '--find',
        '--show',
        '--offset',
        String(partition.offsetBytes),
        '--sizelimit',
        String(partition.sizeBytes),
        disk,
      ],
      { debianPackage: 'mount' },
    )
  ).stdout.trim();
  try {
    return await use(device);
  } finally {
    await runToolOrThrow('losetup', ['--detach', device], { debianPackage: 'mount' });
  }
}
