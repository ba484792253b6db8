/**
 * Can this disk (a physical server's replica) boot as a VM? Read from the
 * disk image without running it: the partition table and boot code, the
 * boot loader's config, the initramfs's drivers, the root filesystem and
 * /etc/fstab, each with what to fix. BIOS boot with extlinux/syslinux is
 * checked; GRUB and UEFI are reported as not checked.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HavenError } from '../errors/index.ts';
import { identifyFilesystem, SIGNATURE_BYTES } from './filesystem-signature.ts';
import { initramfsModules, initramfsPaths } from './initramfs-archive.ts';
import { type Partition, parseMbr, readPartitionTable, SECTOR_BYTES } from './partition-table.ts';

export type VmBootCheckItem =
  | 'partition-table'
  | 'boot-loader'
  | 'boot-config'
  | 'virtio-drivers'
  | 'root-filesystem'
  | 'fstab'
  | 'md-metadata';

export interface VmBootCheckResult {
  item: VmBootCheckItem;
  status: 'passed' | 'failed' | 'not-checked';
  /** What was found. */
  detail: string;
  /** What to change on the server, when it failed or could not be checked. */
  fix?: string;
}

export interface VmBootCheck {
  /** No item failed. */
  bootable: boolean;
  results: VmBootCheckResult[];
}

/** The drivers a KVM guest's root disk needs in the initramfs (Debian builds them as modules). */
export const VM_BOOT_MODULES = ['virtio_pci', 'virtio_blk'] as const;

const MD_MAGIC = 0xa92b4efc;
const EXTLINUX_CONFIGS = [
  '/boot/extlinux/extlinux.conf',
  '/extlinux.conf',
  '/boot/syslinux/syslinux.cfg',
  '/syslinux.cfg',
];
/** fstab types that name no device. */
const VIRTUAL_FS = new Set(['proc', 'sysfs', 'tmpfs', 'devpts', 'devtmpfs', 'none', 'cgroup2', 'securityfs']);

interface Located {
  partition: Partition;
  label: string | null;
  uuid: string | null;
}

export async function checkVmBoot(image: string): Promise<VmBootCheck> {
  const file = await open(image, 'r');
  const results: VmBootCheckResult[] = [];
  const add = (r: VmBootCheckResult) => results.push(r);
  try {
    const size = (await file.stat()).size;
    const read = async (offset: number, length: number) => {
      const buffer = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      await file.read(buffer, 0, buffer.length, offset);
      return buffer;
    };
    const mbrSector = await read(0, SECTOR_BYTES);
    const mbr = parseMbr(mbrSector);
    const partitions = (await readPartitionTable(read, size)) ?? [];
    add(
      mdMetadata(
        await read(0, SECTOR_BYTES),
        await read(4096, SECTOR_BYTES),
        await read(size - 64 * 1024, 64 * 1024),
      ),
    );
    if (mbr === null || partitions.length === 0) {
      add({
        item: 'partition-table',
        status: 'failed',
        detail: 'the disk has no partition table',
        fix: 'a VM boots from a partitioned disk: mirror the whole disk (md over /dev/sda, not over a partition) so the replica holds its partition table',
      });
      return verdict(results);
    }
    if (partitions[0]!.table === 'gpt') {
      add({ item: 'partition-table', status: 'passed', detail: `GPT with ${partitions.length} partitions` });
      add({
        item: 'boot-loader',
        status: 'not-checked',
        detail: 'a GPT disk boots through UEFI (or a BIOS boot partition), which this check does not read',
        fix: 'boot the VM with UEFI firmware (OVMF) and check it by a test failover',
      });
      return verdict(results);
    }
    add({ item: 'partition-table', status: 'passed', detail: `MBR with ${partitions.length} partitions` });
    const active = mbr.find((e) => e.active);
    const bootCode = !mbrSector.subarray(0, 440).every((b) => b === 0);
    if (!active || !bootCode) {
      add({
        item: 'boot-loader',
        status: 'failed',
        detail: !bootCode ? 'the MBR holds no boot code' : 'no partition is marked active (bootable)',
        fix: 'install a boot loader on the disk the server boots from (extlinux --install and syslinux mbr.bin, or grub-install) and mark its partition active',
      });
      return verdict(results);
    }
    add({
      item: 'boot-loader',
      status: 'passed',
      detail: `MBR boot code; partition ${active.slot} is active`,
    });

    const located: Located[] = [];
    for (const partition of partitions) {
      const signature = identifyFilesystem(await read(partition.offsetBytes, SIGNATURE_BYTES));
      located.push({ partition, label: signature.label, uuid: signature.uuid });
    }
    const bootPartition = partitions.find((p) => p.number === active.slot)!;
    const bootFs = new ExtFiles(image, bootPartition.offsetBytes);
    let config: { path: string; entry: BootEntry } | undefined;
    for (const path of EXTLINUX_CONFIGS) {
      const text = await bootFs.text(path);
      if (text === undefined) continue;
      const entry = defaultEntry(text);
      if (entry) config = { path, entry };
      break;
    }
    if (!config) {
      const grub = (await bootFs.text('/boot/grub/grub.cfg')) !== undefined;
      add({
        item: 'boot-config',
        status: grub ? 'not-checked' : 'failed',
        detail: grub
          ? 'the boot partition has a GRUB config, which this check does not read'
          : `no extlinux/syslinux config (${EXTLINUX_CONFIGS.join(', ')}) with a default entry on partition ${active.slot}`,
        fix: grub
          ? 'check the VM boots by a test failover'
          : 'write the boot loader config on the active partition, naming the kernel and initramfs',
      });
      return verdict(results);
    }
    const { entry } = config;
    const missing: string[] = [];
    if (!entry.kernel || !(await bootFs.exists(entry.kernel)))
      missing.push(`kernel ${entry.kernel ?? '(none named)'}`);
    const initrds: Buffer[] = [];
    for (const path of entry.initrds) {
      const data = await bootFs.read(path);
      if (data === undefined) missing.push(`initramfs ${path}`);
      else initrds.push(data);
    }
    if (entry.initrds.length === 0) missing.push('initramfs (none named)');
    add(
      missing.length === 0
        ? {
            item: 'boot-config',
            status: 'passed',
            detail: `${config.path}: kernel ${entry.kernel}, initramfs ${entry.initrds.join(', ')}`,
          }
        : {
            item: 'boot-config',
            status: 'failed',
            detail: `${config.path} names what the partition lacks: ${missing.join(', ')}`,
            fix: 'point the boot loader entry at the kernel and initramfs installed in /boot',
          },
    );

    const modules = new Set(initrds.flatMap((data) => initramfsModules(initramfsPaths(data))));
    const lacking = VM_BOOT_MODULES.filter((m) => !modules.has(m));
    add(
      lacking.length === 0
        ? {
            item: 'virtio-drivers',
            status: 'passed',
            detail: `the initramfs holds ${VM_BOOT_MODULES.join(' and ')}`,
          }
        : {
            item: 'virtio-drivers',
            status: 'failed',
            detail: `the initramfs lacks ${lacking.join(' and ')} (${modules.size} modules in it)`,
            fix: `add ${lacking.join(' and ')} to /etc/initramfs-tools/modules and run update-initramfs -u (dracut: --add-drivers "${lacking.join(' ')}")`,
          },
    );

    const rootSpec = entry.append.find((w) => w.startsWith('root='))?.slice('root='.length);
    const root = rootSpec === undefined ? undefined : resolveSpec(rootSpec, located);
    add(
      root === undefined
        ? {
            item: 'root-filesystem',
            status: 'failed',
            detail: 'the kernel command line names no root=',
            fix: 'add root=UUID=<the root filesystem UUID> to the boot entry',
          }
        : root.ok
          ? { item: 'root-filesystem', status: 'passed', detail: `root=${rootSpec} is ${root.detail}` }
          : {
              item: 'root-filesystem',
              status: 'failed',
              detail: `root=${rootSpec}: ${root.detail}`,
              fix: root.fix,
            },
    );

    const rootPartition = root?.ok ? root.partition : bootPartition;
    const fstab = await new ExtFiles(image, rootPartition.offsetBytes).text('/etc/fstab');
    if (fstab === undefined) {
      add({
        item: 'fstab',
        status: 'not-checked',
        detail: `no /etc/fstab on partition ${rootPartition.number}`,
      });
    } else {
      const bad: string[] = [];
      const fixes = new Set<string>();
      let entries = 0;
      for (const line of fstab.split('\n')) {
        const [spec, mountPoint, type] = line.replace(/#.*/, '').trim().split(/\s+/);
        if (!spec || !mountPoint || VIRTUAL_FS.has(type ?? '') || VIRTUAL_FS.has(spec)) continue;
        entries++;
        const found = resolveSpec(spec, located);
        if (!found.ok) {
          bad.push(`${mountPoint} (${spec}): ${found.detail}`);
          fixes.add(found.fix);
        }
      }
      add(
        bad.length === 0
          ? {
              item: 'fstab',
              status: 'passed',
              detail: `${entries} entries, each found on the disk without md`,
            }
          : { item: 'fstab', status: 'failed', detail: bad.join('; '), fix: [...fixes].join('; ') },
      );
    }
    return verdict(results);
  } finally {
    await file.close();
  }
}

function verdict(results: VmBootCheckResult[]): VmBootCheck {
  return { bootable: results.every((r) => r.status !== 'failed'), results };
}

/** A metadata 1.0 superblock sits at the end; 1.1 at 0 and 1.2 at 4 KiB hide the disk's start behind md. */
function mdMetadata(first: Buffer, at4k: Buffer, tail: Buffer): VmBootCheckResult {
  const isMd = (b: Buffer, at = 0) =>
    b.length >= at + 8 && b.readUInt32LE(at) === MD_MAGIC && b.readUInt32LE(at + 4) === 1;
  if (isMd(first) || isMd(at4k)) {
    return {
      item: 'md-metadata',
      status: 'failed',
      detail: `an md superblock at ${isMd(first) ? 'the start (metadata 1.1)' : '4 KiB (metadata 1.2)'}: the disk's data starts further in, only md finds it`,
      fix: 'mirror with --metadata=1.0 (superblock at the end) so the member is the plain disk',
    };
  }
  // The 1.0 superblock is 8-12 KiB before the end, 4 KiB aligned.
  for (let at = tail.length - 4096; at >= 0; at -= 4096) {
    if (isMd(tail, at)) {
      return {
        item: 'md-metadata',
        status: 'passed',
        detail: 'md metadata 1.0 at the end: the member is the plain disk',
      };
    }
  }
  return { item: 'md-metadata', status: 'passed', detail: 'no md superblock' };
}

type Resolved =
  | { ok: true; partition: Partition; detail: string }
  | { ok: false; detail: string; fix: string };

function resolveSpec(spec: string, located: readonly Located[]): Resolved {
  if (/^\/dev\/(md|md\/)/.test(spec) || spec.startsWith('/dev/disk/by-id/md-')) {
    return {
      ok: false,
      detail: 'an md device, which exists only when the array is assembled',
      fix: 'name the filesystem by UUID= or LABEL= (with metadata 1.0 the member holds it)',
    };
  }
  const match = /^(UUID|LABEL)=(.+)$/.exec(spec);
  if (!match) {
    return {
      ok: false,
      detail: 'a device name, which differs in a VM (virtio disks are /dev/vdX)',
      fix: 'name the filesystem by UUID= or LABEL=',
    };
  }
  const [, kind, value] = match as unknown as [string, 'UUID' | 'LABEL', string];
  const found = located.find((l) => (kind === 'UUID' ? l.uuid === value.toLowerCase() : l.label === value));
  return found
    ? { ok: true, partition: found.partition, detail: `partition ${found.partition.number}` }
    : {
        ok: false,
        detail: `no partition of the disk holds a filesystem with ${kind} ${value}`,
        fix: 'protect every disk the server mounts, or remove the entry',
      };
}

interface BootEntry {
  kernel?: string;
  initrds: string[];
  append: string[];
}

/** The DEFAULT label's entry of an extlinux/syslinux config (the first label without DEFAULT). */
export function defaultEntry(config: string): BootEntry | undefined {
  const labels = new Map<string, BootEntry>();
  let current: BootEntry | undefined;
  let first: string | undefined;
  let wanted: string | undefined;
  for (const raw of config.split('\n')) {
    const line = raw.trim();
    const [keyword, ...rest] = line.split(/\s+/);
    const value = rest.join(' ');
    switch (keyword?.toUpperCase()) {
      case 'DEFAULT':
        wanted = value;
        break;
      case 'LABEL':
        current = { initrds: [], append: [] };
        labels.set(value, current);
        first ??= value;
        break;
      case 'LINUX':
      case 'KERNEL':
        if (current) current.kernel = value;
        break;
      case 'INITRD':
        if (current) current.initrds = value.split(',').filter(Boolean);
        break;
      case 'APPEND':
        if (current) current.append = rest;
        break;
    }
  }
  return labels.get(wanted ?? first ?? '') ?? (first ? labels.get(first) : undefined);
}

/** Files of an ext2/3/4 filesystem at an offset in an image, read with debugfs (nothing is mounted). */
class ExtFiles {
  #image: string;
  #offset: number;
  constructor(image: string, offset: number) {
    this.#image = image;
    this.#offset = offset;
  }
  async read(path: string): Promise<Buffer | undefined> {
    if (/[\s"]/.test(path)) return undefined;
    const dir = await mkdtemp(join(tmpdir(), 'haven-vmboot-'));
    try {
      const out = join(dir, 'file');
      await new Promise<void>((resolve, reject) =>
        execFile(
          'debugfs',
          ['-R', `dump ${path} ${out}`, `${this.#image}?offset=${this.#offset}`],
          (error) =>
            error && (error as NodeJS.ErrnoException).code === 'ENOENT'
              ? reject(
                  new HavenError('not_available', "'debugfs' is not installed on this host", {
                    install: 'e2fsprogs',
                  }),
                )
              : resolve(),
        ),
      );
      return await readFile(out).catch(() => undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  async text(path: string): Promise<string | undefined> {
    return (await this.read(path))?.toString('utf8');
  }
  async exists(path: string): Promise<boolean> {
    return (await this.read(path)) !== undefined;
  }
}
