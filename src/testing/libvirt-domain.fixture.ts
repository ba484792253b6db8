/**
 * A libvirt domain "as an operator runs it", for the libvirt tests: the Haven
 * test guest booted from its kernel, its data disk a qcow2 image, one NIC on
 * a Linux bridge that stays down (no traffic leaves), the serial console in a
 * file. Its files live in a folder libvirt's QEMU (user libvirt-qemu) can
 * reach: 0755, never world-writable. `remove` destroys and undefines it and
 * deletes everything, also after a failed test.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Machine } from '../domain/model.ts';
import { buildGuestImage, formatDataDisk, type GuestSettings, guestCommandLine } from '../guest/index.ts';
import { until } from './until.ts';

const run = promisify(execFile);

export interface LibvirtTestDomain {
  name: string;
  dir: string;
  image: string;
  consoleFile: string;
  bridge: string;
  mac: string;
  diskBytes: number;
  remove(): Promise<void>;
}

/** Bridges are named per process and per domain (a name has at most 15 characters). */
let domainsDefined = 0;

export interface TestDomainOptions {
  /** The data disk's virtual size (default 32 MiB); the image stays sparse. */
  diskBytes?: number;
  /** What the test guest does (default: records at 5/s); e.g. a static address and probes. */
  guest?: GuestSettings;
  /** A virtio serial channel for the QEMU guest agent (org.qemu.guest_agent.0), served by the guest's haven-agent. */
  guestAgent?: boolean;
  /** `kvm` where /dev/kvm works; default `qemu` (TCG). */
  virtualization?: 'qemu' | 'kvm';
}

export async function defineTestDomain(
  uri: string,
  name: string,
  options: TestDomainOptions = {},
): Promise<LibvirtTestDomain> {
  const guest = await buildGuestImage();
  // /tmp itself is world-writable but sticky; the folder is ours, readable by libvirt-qemu.
  const dir = await mkdtemp('/tmp/haven-libvirt-');
  await chmod(dir, 0o755);
  const kernel = join(dir, 'vmlinuz');
  const initrd = join(dir, 'initramfs.gz');
  await copyFile(guest.kernel, kernel);
  await copyFile(guest.initramfs, initrd);
  await chmod(kernel, 0o644);
  await chmod(initrd, 0o644);
  const diskBytes = options.diskBytes ?? 32 * 1024 * 1024;
  const raw = join(dir, 'data.raw');
  const image = join(dir, 'data.qcow2');
  await formatDataDisk(raw, { sizeBytes: diskBytes });
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, image]);
  await rm(raw);
  const bridge = `hvlv${process.pid % 100000}-${domainsDefined++}`;
  await run('ip', ['link', 'add', bridge, 'type', 'bridge']);
  const mac = '52:54:00:aa:bb:01';
  const consoleFile = join(dir, 'console.log');
  const xml = `<domain type='${options.virtualization ?? 'qemu'}'>
  <name>${name}</name>
  <memory unit='KiB'>131072</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>${kernel}</kernel>
    <initrd>${initrd}</initrd>
    <cmdline>${guestCommandLine(options.guest ?? { rate: 5 })}</cmdline>
  </os>
  <features><acpi/></features>
  <on_reboot>destroy</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${image}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='bridge'>
      <mac address='${mac}'/>
      <source bridge='${bridge}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path='${consoleFile}'/><target port='0'/></serial>
${options.guestAgent ? "    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\n" : ''}    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>
`;
  const xmlFile = join(dir, 'domain.xml');
  await writeFile(xmlFile, xml);
  await run('virsh', ['-c', uri, 'define', xmlFile]);
  return {
    name,
    dir,
    image,
    consoleFile,
    bridge,
    mac,
    diskBytes,
    async remove() {
      await run('virsh', ['-c', uri, 'destroy', name]).catch(() => {});
      await run('virsh', ['-c', uri, 'undefine', name]).catch(() => {});
      await run('ip', ['link', 'del', bridge]).catch(() => {});
      await rm(dir, { recursive: true, force: true });
      // libvirt keeps each domain's QEMU log after undefine.
      await rm(`/var/log/libvirt/qemu/${name}.log`, { force: true });
    },
  };
}

/** A REST API call as the tests make it (in process or over HTTP). */
type ApiCall = <T>(method: string, path: string, body?: unknown) => Promise<{ status: number; body: T }>;

/**
 * The test domain imported at host 'primary' once both hosts are connected,
 * its bridge mapped to itself at the recovery site (both sites share this
 * machine), as an operator prepares a machine for protection and failover.
 */
export async function importTestDomain(api: ApiCall, domain: LibvirtTestDomain): Promise<Machine> {
  await until(
    'both hosts to connect',
    async () => {
      const { body } = await api<{ hosts: Array<{ status: string }> }>('GET', '/hosts');
      return body?.hosts?.length === 2 && body.hosts.every((h) => h.status === 'connected');
    },
    { timeoutMs: 120_000 },
  );
  const imported = await api<Machine>('POST', '/machines/import', { hostId: 'primary', domain: domain.name });
  assert.equal(imported.status, 201, JSON.stringify(imported.body));
  const mapped = await api('PATCH', '/sites/primary', { networkMapping: { [domain.bridge]: domain.bridge } });
  assert.equal(mapped.status, 200, JSON.stringify(mapped.body));
  return imported.body;
}

/** A folder libvirt's QEMU (user libvirt-qemu) can search: ours, 0755, never world-writable. */
export async function reachableFolder(prefix: string): Promise<string> {
  const dir = await mkdtemp(join('/tmp', prefix));
  await chmod(dir, 0o755);
  return dir;
}
