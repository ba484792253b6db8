import { HavenError } from '../errors/index.ts';

/**
 * The guest's kernel drivers that are modules in Debian's cloud kernel: virtio
 * PCI transport, block, network, entropy and serial ports (the guest agent's
 * channel), plus ACPI button and evdev so a
 * QMP `system_powerdown` reaches the guest as a power-button press. ext4, jbd2
 * and crc32c are built in (CONFIG_EXT4_FS=y), so the disk needs no more.
 */
export const GUEST_MODULES: readonly string[] = [
  'virtio_pci',
  'virtio_blk',
  'virtio_net',
  'virtio_rng',
  'virtio_console',
  'button',
  'evdev',
];

/**
 * What the server variant adds: the kernel's NBD client and md raid1 (md_mod
 * comes as raid1's dependency), the write splitter of a protected server.
 */
export const SERVER_GUEST_MODULES: readonly string[] = ['nbd', 'raid1'];

/** Kernel module names treat '-' and '_' alike (virtio-rng.ko is module virtio_rng). */
export function moduleName(fileOrName: string): string {
  const base = fileOrName.slice(fileOrName.lastIndexOf('/') + 1).replace(/\.ko$/, '');
  return base.replaceAll('-', '_');
}

/**
 * Reads the `depends=` entry of a module's .modinfo section. The Debian
 * package ships no modules.dep (depmod runs at install time), so the module
 * file itself is the source of truth.
 */
export function readModuleDepends(ko: Uint8Array): string[] {
  const text = Buffer.from(ko.buffer, ko.byteOffset, ko.byteLength).toString('latin1');
  // .modinfo entries are NUL-terminated key=value strings; the NUL before the
  // key keeps a stray "depends=" inside code or other strings from matching.
  const start = text.indexOf('\0depends=');
  if (start < 0) {
    throw new HavenError('bad_request', 'kernel module has no depends= entry in its .modinfo section', {});
  }
  const valueStart = start + '\0depends='.length;
  const value = text.slice(valueStart, text.indexOf('\0', valueStart));
  return value === '' ? [] : value.split(',').map(moduleName);
}

/**
 * Orders `roots` and everything they depend on so that each module comes
 * after its dependencies (the order insmod needs). `dependsOf` answers for one
 * module name; a cycle or an unknown module is an error naming it.
 */
export function moduleLoadOrder(roots: readonly string[], dependsOf: (name: string) => string[]): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]): void => {
    const seen = state.get(name);
    if (seen === 'done') return;
    if (seen === 'visiting') {
      throw new HavenError('conflict', `kernel module dependency cycle: ${[...path, name].join(' -> ')}`, {
        cycle: [...path, name],
      });
    }
    state.set(name, 'visiting');
    for (const dep of dependsOf(name)) visit(dep, [...path, name]);
    state.set(name, 'done');
    order.push(name);
  };
  for (const root of roots) visit(moduleName(root), []);
  return order;
}
