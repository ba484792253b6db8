import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Embedded, startEmbedded } from '../app/start-embedded.ts';
import type { Host, Machine } from '../domain/model.ts';
import { embeddedApi } from '../testing/embedded-api.ts';
import { defineTestDomain, type LibvirtTestDomain } from '../testing/libvirt-domain.fixture.ts';
import { ensureLibvirtd, type Libvirtd, libvirtMissing } from '../testing/libvirtd.fixture.ts';
import { until } from '../testing/until.ts';
import type { HostDomains } from './import-domain.ts';

const skip = await libvirtMissing();

type ErrorBody = { error: { code: string; message: string; details: Record<string, unknown> } };

/**
 * `haven up --libvirt`: the embedded hosts drive a real libvirtd; a domain an
 * operator defined (qcow2 disk, bridge NIC) shows in the host's inventory and
 * is imported through the API with its settings derived from the domain.
 */
describe('importing a libvirt domain through the API', { skip }, () => {
  let libvirtd: Libvirtd;
  let domain: LibvirtTestDomain;
  let dir: string;
  let up: Embedded;
  const api = embeddedApi(() => up);
  const name = `haven-import-${process.pid}`;

  before(async () => {
    libvirtd = await ensureLibvirtd();
    domain = await defineTestDomain(libvirtd.uri, name);
    dir = await mkdtemp(join(tmpdir(), 'haven-import-'));
    up = await startEmbedded({ dataDir: dir, port: 0, demo: false, libvirt: { uri: libvirtd.uri } });
    await until(
      'both hosts to connect and report libvirt',
      async () => {
        const { body } = await api<{ hosts: Host[] }>('GET', '/hosts');
        return (
          body.hosts.length === 2 && body.hosts.every((h) => h.capabilities.includes('hypervisor:libvirt'))
        );
      },
      { timeoutMs: 30_000 },
    );
  });
  after(async () => {
    await up?.stop();
    await domain?.remove();
    await rm(dir, { recursive: true, force: true });
    await libvirtd?.stop();
  });

  it("lists the host's domains with disk format, virtual size, NICs and boot", async () => {
    const { status, body } = await api<HostDomains>('GET', '/hosts/primary/domains');
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.driver, 'libvirt');
    assert.equal(body.source, 'host');
    const listed = body.domains.find((d) => d.name === name);
    assert.ok(listed, `domain ${name} in ${body.domains.map((d) => d.name).join(', ')}`);
    assert.equal(listed.state, 'shut-off');
    assert.equal(listed.disks[0]!.format, 'qcow2');
    assert.equal(listed.disks[0]!.virtualSizeBytes, domain.diskBytes);
    assert.deepEqual(listed.nics, [
      { mac: domain.mac, network: domain.bridge, type: 'bridge', model: 'virtio' },
    ]);
  });

  it('imports it as an unprotected machine with settings derived from the domain', async () => {
    const { status, body } = await api<Machine>('POST', '/machines/import', {
      hostId: 'primary',
      domain: name,
    });
    assert.equal(status, 201, JSON.stringify(body));
    assert.equal(body.name, name);
    assert.equal(body.state, 'unprotected');
    assert.deepEqual(body.disks, [
      {
        id: 'vda',
        sizeBytes: domain.diskBytes,
        source: domain.image,
        hasSnapshots: false,
        fromDomain: { target: 'vda', bus: 'virtio', format: 'qcow2' },
      },
    ]);
    assert.equal(body.recoverySettings.cpus, 1);
    assert.equal(body.recoverySettings.memoryMiB, 128);
    assert.deepEqual(body.recoverySettings.nics, [
      { network: domain.bridge, recoveryNetwork: null, mac: domain.mac, ip: { mode: 'dhcp' } },
    ]);
    assert.equal(body.recoverySettings.boot?.kernel, join(domain.dir, 'vmlinuz'));
    assert.equal(body.importedFrom?.domain, name);
    assert.equal(body.importedFrom?.uri, libvirtd.uri);
    const stored = await api<Machine>('GET', `/machines/${name}`);
    assert.deepEqual(stored.body.disks, body.disks);
    assert.deepEqual(stored.body.importedFrom, body.importedFrom);
  });

  it('refuses, naming the field: already imported, unknown domain, unknown host, a host without libvirt', async () => {
    const refused = async (request: object, status: number, field: string, message: RegExp) => {
      const answer = await api<ErrorBody>('POST', '/machines/import', request);
      assert.equal(answer.status, status, JSON.stringify(answer.body));
      assert.equal(answer.body.error.details.field, field);
      assert.match(answer.body.error.message, message);
    };
    await refused(
      { hostId: 'primary', domain: name },
      409,
      'domain',
      new RegExp(`already imported as machine '${name}'`),
    );
    await refused(
      { hostId: 'primary', domain: 'haven-no-such-domain' },
      400,
      'domain',
      /has no libvirt domain/,
    );
    await refused({ hostId: 'nowhere', domain: name }, 400, 'hostId', /host 'nowhere' does not exist/);
    const { store } = up.vault.context;
    const recovery = (await store.hosts.getByName('recovery'))!;
    await store.hosts.update({
      ...recovery,
      capabilities: recovery.capabilities.filter((c) => c !== 'hypervisor:libvirt'),
    });
    await refused({ hostId: 'recovery', domain: name }, 400, 'hostId', /does not drive libvirt/);
  });

  it("refuses to protect a domain whose image another VM writes behind Haven's back, naming that VM", async () => {
    // A QEMU started by hand on the domain's image (the domain itself is off): Haven would not see its writes.
    const rogue = spawn(
      'qemu-system-x86_64',
      [
        '-name',
        'guest=rogue-writer',
        '-machine',
        'none',
        '-nodefaults',
        '-display',
        'none',
        '-blockdev',
        `driver=qcow2,node-name=d0,file.driver=file,file.filename=${domain.image}`,
      ],
      { stdio: 'ignore' },
    );
    try {
      // Asked only once the rogue QEMU holds the image (its write lock): before that there is no writer to see.
      await until('the rogue QEMU to hold the image', async () => {
        const info = await new Promise<boolean>((resolve) =>
          execFile('qemu-img', ['info', domain.image], (error) => resolve(error !== null)),
        );
        return info || undefined;
      });
      const { status, body } = await api<ErrorBody>('POST', `/machines/${name}/enable-replication`, {
        recoveryHostId: 'recovery',
        policyId: 'default',
      });
      assert.equal(status, 409, JSON.stringify(body));
      assert.match(
        body.error.message,
        /disk vda's image '.*data\.qcow2' is open for writing by pid \d+ .*QEMU guest 'rogue-writer'/,
      );
    } finally {
      rogue.kill('SIGKILL');
    }
  });

  it('shows the inventory a host reported when it connected while it is away, saying so', async () => {
    const recovery = up.hosts[1]!;
    await recovery.agent.stop();
    await until(
      'the recovery host to be disconnected',
      async () => !up.vault.context.hosts.isConnected(recovery.agent.identity.hostId),
    );
    const { status, body } = await api<HostDomains>('GET', '/hosts/recovery/domains');
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.source, 'vault');
    assert.ok(body.domains.some((d) => d.name === name && d.disks[0]!.format === 'qcow2'));
    const refused = await api<ErrorBody>('POST', '/machines/import', { hostId: 'recovery', domain: name });
    assert.notEqual(refused.status, 201);
  });
});
