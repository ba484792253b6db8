import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { SERVER_AGENT_SCRIPT } from '../server-agent/server-agent-script.ts';
import { buildGuestImage, defaultGuestCacheDir, guestImageKey } from './build-guest-image.ts';

/** Members of a newc cpio archive (what the kernel unpacks), by name. */
function cpioEntries(archive: Buffer): Map<string, Buffer> {
  const entries = new Map<string, Buffer>();
  let at = 0;
  const field = (offset: number) =>
    Number.parseInt(archive.toString('latin1', at + offset, at + offset + 8), 16);
  while (at < archive.length && archive.toString('latin1', at, at + 6) === '070701') {
    const nameSize = field(94);
    const fileSize = field(54);
    const name = archive.toString('latin1', at + 110, at + 110 + nameSize - 1);
    if (name === 'TRAILER!!!') break;
    const dataAt = Math.ceil((at + 110 + nameSize) / 4) * 4;
    entries.set(name, archive.subarray(dataAt, dataAt + fileSize));
    at = Math.ceil((dataAt + fileSize) / 4) * 4;
  }
  return entries;
}

describe('guest image builder', () => {
  it('keys the cache by every input, so a changed init script rebuilds', () => {
    const inputs = {
      kernel: { name: 'linux-image-6.1.0-50-cloud-amd64', version: '6.1.176-1' },
      modules: ['virtio_pci', 'virtio_blk'],
      initScript: Buffer.from('#!/bin/sh\necho one\n'),
      powerdownScript: Buffer.from('#!/bin/sh\npoweroff -f\n'),
      agentScript: Buffer.from('#!/bin/sh\nexit 0\n'),
      busybox: Buffer.from('busybox'),
    };
    const key = guestImageKey(inputs);
    assert.match(key, /^[0-9a-f]{16}$/);
    assert.equal(guestImageKey({ ...inputs }), key);
    const changed = [
      { ...inputs, kernel: { ...inputs.kernel, version: '6.1.177-1' } },
      { ...inputs, modules: ['virtio_pci', 'virtio_blk', 'evdev'] },
      { ...inputs, initScript: Buffer.from('#!/bin/sh\necho two\n') },
      { ...inputs, powerdownScript: Buffer.from('#!/bin/sh\nhalt -f\n') },
      { ...inputs, agentScript: Buffer.from('#!/bin/sh\nexit 1\n') },
      { ...inputs, busybox: Buffer.from('busybox 1.36') },
    ].map(guestImageKey);
    assert.equal(new Set([key, ...changed]).size, 7);
  });

  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('builds once when two builders race, leaving one complete cache entry', async () => {
    // The shared cache holds the kernel .deb; seeding a fresh cache with it
    // keeps this test off the network while the build itself still runs.
    const shared = await buildGuestImage();
    const cacheDir = await mkdtemp(join(tmpdir(), 'haven-guest-cache-'));
    dirs.push(cacheDir);
    const deb = `${shared.kernelPackage}_${shared.kernelPackageVersion}.deb`;
    await mkdir(join(cacheDir, 'debs'));
    await copyFile(join(defaultGuestCacheDir(), 'debs', deb), join(cacheDir, 'debs', deb)).catch(() => {});
    // A builder that died mid-build left its work directory behind.
    const dead = spawnSync('true').pid;
    await mkdir(join(cacheDir, `.build-0123456789abcdef-${dead}-deadbeef`));

    const [a, b] = await Promise.all([buildGuestImage({ cacheDir }), buildGuestImage({ cacheDir })]);
    assert.equal(a.cacheKey, shared.cacheKey, 'same inputs, same key');
    assert.deepEqual({ ...a, cached: false }, { ...b, cached: false });
    assert.deepEqual((await readdir(cacheDir)).filter((n) => !n.startsWith('resolved-')).sort(), [
      a.cacheKey,
      'debs',
    ]);

    const entries = cpioEntries(gunzipSync(await readFile(a.initramfs)));
    for (const name of [
      'init',
      'bin/busybox',
      'bin/sha256sum',
      'bin/haven-powerdown',
      'bin/haven-agent',
      'etc/acpi/PWRF/00000080',
      'lib/modules/load-order',
      'lib/modules/virtio_blk.ko',
      'lib/modules/virtio_pci.ko',
    ]) {
      assert.ok(entries.has(name), `initramfs holds ${name}`);
    }
    assert.deepEqual(entries.get('init'), await readFile(new URL('./guest-init.sh', import.meta.url)));
    const loadOrder = entries.get('lib/modules/load-order')!.toString().trim().split('\n');
    const { modules } = JSON.parse(await readFile(join(cacheDir, a.cacheKey, 'manifest.json'), 'utf8'));
    assert.deepEqual(
      loadOrder,
      modules.map((m: string) => `${m}.ko`),
    );
    for (const [module, dependency] of [
      ['virtio_blk', 'virtio_ring'],
      ['virtio_pci', 'virtio'],
      ['virtio_net', 'net_failover'],
    ]) {
      assert.ok(
        modules.indexOf(dependency) < modules.indexOf(module),
        `${dependency} loads before ${module}`,
      );
    }
    const kernel = await readFile(a.kernel);
    assert.equal(kernel.toString('latin1', 0x202, 0x206), 'HdrS', 'a bzImage boot header');

    const again = await buildGuestImage({ cacheDir });
    assert.equal(again.cached, true);
    assert.equal(again.initramfs, a.initramfs);
  });

  it('builds the server variant: nbd and raid1 modules, nbd-client, mdadm and openssl with exactly their libraries, the server agent', async () => {
    const server = await buildGuestImage({ variant: 'server' });
    const vm = await buildGuestImage();
    assert.equal(server.variant, 'server');
    assert.notEqual(server.cacheKey, vm.cacheKey);
    for (const module of ['nbd', 'md_mod', 'raid1']) assert.ok(server.modules.includes(module), module);
    assert.ok(
      server.modules.indexOf('md_mod') < server.modules.indexOf('raid1'),
      'md_mod loads before raid1',
    );
    assert.ok(!vm.modules.includes('raid1'), 'the workload guest stays as it was');
    assert.deepEqual(vm.packages, []);
    for (const pkg of ['nbd-client', 'mdadm', 'openssl', 'libssl3', 'libc6', 'libgnutls30', 'libudev1']) {
      assert.ok(
        server.packages.some((p) => p.startsWith(`${pkg}=`)),
        `${pkg} in ${server.packages.join(' ')}`,
      );
    }
    const entries = cpioEntries(gunzipSync(await readFile(server.initramfs)));
    assert.deepEqual(entries.get('bin/haven-server-agent'), await readFile(SERVER_AGENT_SCRIPT));
    // The programs run from the unpacked initramfs alone: no library comes from the build host.
    const dir = await mkdtemp(join(tmpdir(), 'haven-server-initramfs-'));
    dirs.push(dir);
    const unpack = spawnSync('sh', ['-c', `gzip -dc '${server.initramfs}' | cpio -idm --quiet`], {
      cwd: dir,
    });
    assert.equal(unpack.status, 0, String(unpack.stderr));
    const mdadm = spawnSync('chroot', [dir, '/bin/mdadm', '--version'], { encoding: 'utf8' });
    assert.match(`${mdadm.stdout}${mdadm.stderr}`, /mdadm - v4\./);
    const nbdClient = spawnSync('chroot', [dir, '/bin/nbd-client', '--help'], { encoding: 'utf8' });
    assert.match(`${nbdClient.stdout}${nbdClient.stderr}`, /nbd-client version 3\./);
    const openssl = spawnSync('chroot', [dir, '/bin/openssl', 'version'], { encoding: 'utf8' });
    assert.match(`${openssl.stdout}${openssl.stderr}`, /^OpenSSL 3\./);
  });
});
