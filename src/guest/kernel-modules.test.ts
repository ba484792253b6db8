import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HavenError } from '../errors/index.ts';
import { moduleLoadOrder, moduleName, readModuleDepends } from './kernel-modules.ts';

/** A stand-in for a module's .modinfo section: NUL-separated key=value strings. */
function modinfo(...entries: string[]): Buffer {
  return Buffer.from(`\x7fELF junk depends=not-this\0${entries.join('\0')}\0trailing`, 'latin1');
}

describe('kernel modules', () => {
  it('reads depends= from the modinfo strings, normalising names', () => {
    assert.deepEqual(
      readModuleDepends(
        modinfo('license=GPL', 'depends=virtio_ring,virtio-pci_modern_dev', 'name=virtio_pci'),
      ),
      ['virtio_ring', 'virtio_pci_modern_dev'],
    );
    assert.deepEqual(readModuleDepends(modinfo('depends=', 'name=virtio')), []);
    assert.throws(() => readModuleDepends(modinfo('name=broken')), HavenError);
  });

  it('names modules the way the kernel does', () => {
    assert.equal(moduleName('kernel/drivers/char/hw_random/virtio-rng.ko'), 'virtio_rng');
    assert.equal(moduleName('button'), 'button');
  });

  it('orders every module after its dependencies, each once', () => {
    const deps: Record<string, string[]> = {
      virtio_pci: ['virtio_ring', 'virtio_pci_modern_dev', 'virtio'],
      virtio_blk: ['virtio', 'virtio_ring'],
      virtio_net: ['virtio_ring', 'virtio', 'net_failover'],
      net_failover: ['failover'],
    };
    const order = moduleLoadOrder(['virtio_pci', 'virtio_blk', 'virtio_net', 'button'], (n) => deps[n] ?? []);
    assert.equal(new Set(order).size, order.length);
    assert.deepEqual([...order].sort(), [
      'button',
      'failover',
      'net_failover',
      'virtio',
      'virtio_blk',
      'virtio_net',
      'virtio_pci',
      'virtio_pci_modern_dev',
      'virtio_ring',
    ]);
    for (const [module, needs] of Object.entries(deps)) {
      for (const need of needs)
        assert.ok(order.indexOf(need) < order.indexOf(module), `${need} before ${module}`);
    }
  });

  it('refuses a dependency cycle, naming it', () => {
    assert.throws(
      () => moduleLoadOrder(['a'], (n) => ({ a: ['b'], b: ['c'], c: ['a'] })[n] ?? []),
      (error: HavenError) => error.code === 'conflict' && error.message.includes('a -> b -> c -> a'),
    );
  });
});
