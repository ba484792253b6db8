/**
 * A server's md leg through the host's `disk` operations: the staging image
 * is made sparse at the asked size under the data directory, the export
 * keeps the server's device as its source, is served on the servers'
 * listener, and a staging image of another size is refused.
 */
import assert from 'node:assert/strict';
import { stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DiskService } from '../disk/disk-service.ts';
import type { HavenError } from '../errors/index.ts';
import { scratchDir } from '../testing/nbd-test-fixture.ts';
import { hostDiskService, serverLegImageOf } from './host-disk-service.ts';
import { openServerCa } from './server-ca.ts';

test('a server leg is staged in the data directory and served to its machine', async () => {
  const scratch = await scratchDir('leg-attach');
  const ca = await openServerCa(join(scratch.path, 'ca'), { tlsHostname: 'primary', address: '127.0.0.1' });
  const service = await DiskService.start({
    socket: join(scratch.path, 'nbd.sock'),
    servers: {
      listen: { host: '127.0.0.1', port: 0 },
      tls: { key: ca.keyPem, cert: ca.certPem, ca: ca.caCertPem },
    },
  });
  try {
    const disk = hostDiskService(service, { dataDir: scratch.path });
    const ref = { machineId: 'web-01', diskId: 'disk0' };
    const attached = await disk.attach({ ...ref, source: '/dev/sda', sizeBytes: 8 << 20, serverLeg: true });
    assert.equal(attached.source, '/dev/sda');
    const image = serverLegImageOf(scratch.path, ref);
    assert.equal(attached.stagingImage, image, 'the host says where it keeps the staging image');
    const st = await stat(image);
    assert.equal(st.size, 8 << 20);
    assert.ok(st.blocks * 512 < 1 << 20, 'sparse');
    assert.deepEqual(
      await disk.attach({ ...ref, source: '/dev/sda', sizeBytes: 8 << 20, serverLeg: true }),
      attached,
    );
    await assert.rejects(
      disk.attach({ ...ref, source: '/dev/sda', sizeBytes: 8 << 20 }),
      (e: HavenError) => e.code === 'conflict',
      'the same export as an ordinary disk',
    );
    assert.match(service.info('web-01.disk0').uris.tcp ?? '', /^nbds:\/\/127\.0\.0\.1:\d+\/web-01\.disk0$/);
    await disk.detach(ref);
    await truncate(image, 4 << 20);
    await assert.rejects(
      disk.attach({ ...ref, source: '/dev/sda', sizeBytes: 8 << 20, serverLeg: true }),
      (e: HavenError) => e.code === 'conflict' && e.message.includes('4194304 bytes'),
    );
  } finally {
    await service.close();
    await scratch.remove();
  }
});
