import type { StoredDefinition } from './machine-definition.ts';
import { staticIpWords } from './machine-definition.ts';
import { parseNbdUri } from './nbd-uri.ts';

export interface QemuRunFiles {
  qmpSocket: string;
  pidFile: string;
  consoleLog: string;
}

export interface QemuCommandLineOptions {
  /** 'tcg' where /dev/kvm does not work (our CI), 'kvm' in production. */
  accel: 'tcg' | 'kvm';
  /** Tap device name per NIC, in NIC order. */
  taps: readonly string[];
}

/**
 * How long QEMU holds a disk's requests while its NBD server is gone before it
 * fails them to the guest. A host agent that is killed or restarted serves
 * its disks again within seconds (QEMU retries with a backoff of at most
 * 16 s); until then the guest's I/O waits instead of failing.
 */
export const NBD_RECONNECT_DELAY_SECONDS = 300;

/** QEMU's option parser splits on commas; a literal comma is written twice. */
export function qemuOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/**
 * The arguments for `qemu-system-x86_64`. QEMU daemonizes in a session of
 * its own (so the machine outlives the host agent, which re-attaches through
 * the pidfile and QMP socket), its NBD disks reconnect to a restarted agent
 * (NBD_RECONNECT_DELAY_SECONDS), and it starts paused (`-S`): the driver wires the NICs into their
 * bridges before any guest code runs, then resumes it.
 */
export function qemuCommandLine(
  machine: StoredDefinition,
  files: QemuRunFiles,
  options: QemuCommandLineOptions,
): string[] {
  const args = [
    '-name',
    `guest=${qemuOptionValue(machine.name)}`,
    '-accel',
    options.accel,
    '-machine',
    'pc',
    '-m',
    `${machine.memoryMiB}M`,
    '-smp',
    String(machine.cpus),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-daemonize',
    '-S',
    '-pidfile',
    files.pidFile,
    '-qmp',
    `unix:${qemuOptionValue(files.qmpSocket)},server=on,wait=off`,
    '-chardev',
    `file,id=console,path=${qemuOptionValue(files.consoleLog)}`,
    '-serial',
    'chardev:console',
    // /dev/urandom can stall for a long time after boot without an entropy source.
    '-device',
    'virtio-rng-pci',
  ];
  machine.disks.forEach((disk, index) => {
    const target = parseNbdUri(disk.nbdUri);
    const node = `disk${index}`;
    args.push(
      '-blockdev',
      JSON.stringify({
        driver: 'nbd',
        'node-name': node,
        server: target.server,
        export: target.export,
        'reconnect-delay': NBD_RECONNECT_DELAY_SECONDS,
      }),
      '-device',
      `virtio-blk-pci,drive=${node},serial=${disk.diskId}${machine.boot ? '' : `,bootindex=${index}`}`,
    );
  });
  machine.nics.forEach((nic, index) => {
    const tap = options.taps[index];
    if (!tap) throw new Error(`no tap device for NIC ${index} of '${machine.name}'`);
    args.push(
      '-netdev',
      `tap,id=net${index},ifname=${tap},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=net${index},mac=${nic.mac}`,
    );
  });
  if (machine.boot) {
    args.push('-kernel', machine.boot.kernel);
    if (machine.boot.initrd) args.push('-initrd', machine.boot.initrd);
    const words = [machine.boot.cmdline.trim(), ...staticIpWords(machine.nics)].filter(Boolean);
    args.push('-append', words.join(' '));
  }
  return args;
}
