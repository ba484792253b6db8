import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateMachineDefinition } from '../machine-definition.ts';
import { diskBySerial, domainXml, parseDomainXml, withDiskOnImage } from './domain-xml.ts';
import { parseXml } from './xml.ts';

const OPERATOR_DOMAIN = `<?xml version="1.0"?>
<!-- written by virt-install -->
<domain type='kvm' id='3'>
  <name>web &amp; db</name>
  <uuid>0b3c5e7a-1111-2222-3333-444455556666</uuid>
  <memory unit='GiB'>2</memory>
  <vcpu placement='static'>4</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <boot dev='cdrom'/>
    <boot dev='hd'/>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg0/web-data'/>
      <target dev='sdb' bus='scsi'/>
      <readonly/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='sdc' bus='sata'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:AB:CD:EF'/>
      <source network='default'/>
      <model type='e1000'/>
    </interface>
    <console type='pty'/>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-3-web/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
    </channel>
    <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
  </devices>
</domain>`;

describe('libvirt domain XML', () => {
  it("reads an operator's domain: units, file and block disks, CD-ROM, libvirt network, boot order", () => {
    const domain = parseDomainXml(OPERATOR_DOMAIN);
    assert.equal(domain.name, 'web & db');
    assert.equal(domain.uuid, '0b3c5e7a-1111-2222-3333-444455556666');
    assert.equal(domain.cpus, 4);
    assert.equal(domain.memoryMiB, 2048);
    assert.deepEqual(
      domain.disks.map((d) => [d.target, d.bus, d.device, d.source, d.format, d.readOnly]),
      [
        [
          'vda',
          'virtio',
          'disk',
          { type: 'file', path: '/var/lib/libvirt/images/web.qcow2' },
          'qcow2',
          false,
        ],
        ['sdb', 'scsi', 'disk', { type: 'block', path: '/dev/vg0/web-data' }, 'raw', true],
        ['sdc', 'sata', 'cdrom', { type: 'none' }, null, false],
      ],
    );
    assert.deepEqual(domain.nics, [
      { mac: '52:54:00:ab:cd:ef', network: 'default', type: 'network', model: 'e1000' },
    ]);
    assert.deepEqual(domain.boot, { kind: 'devices', devices: ['cdrom', 'hd'] });
    assert.equal(domain.consoleFile, null);
    assert.equal(domain.guestAgent, true, 'its guest agent channel');
    const withoutAgent = OPERATOR_DOMAIN.replace(/<channel type='unix'>[\s\S]*?<\/channel>/, '');
    assert.equal(parseDomainXml(withoutAgent).guestAgent, false, 'a SPICE channel is no guest agent');
  });

  it("writes a Haven machine's domain and reads the same machine back", () => {
    const machine = validateMachineDefinition({
      name: 'vm1',
      cpus: 2,
      memoryMiB: 256,
      disks: [
        { diskId: 'disk0', nbdUri: 'nbd+unix:///vm1.disk0?socket=/run/haven/nbd.sock' },
        { diskId: 'disk1', nbdUri: 'nbd://10.0.0.5:10810/vm1.disk1' },
      ],
      nics: [
        {
          network: 'br-prod',
          mac: null,
          ip: { mode: 'static', address: '10.0.0.9', prefixLength: 24, gateway: null, dns: [] },
        },
      ],
      boot: { kernel: '/srv/k', initrd: null, cmdline: "console=ttyS0 x='<&>'" },
    });
    const xml = domainXml(machine, { consoleFile: '/var/log/c.log', domainType: 'qemu' });
    assert.match(xml, /^<domain type='qemu'>/);
    const read = parseDomainXml(xml);
    assert.equal(read.name, 'vm1');
    assert.equal(read.cpus, 2);
    assert.equal(read.memoryMiB, 256);
    assert.deepEqual(
      read.disks.map((d) => d.source),
      [
        { type: 'nbd', export: 'vm1.disk0', socket: '/run/haven/nbd.sock', host: null, port: null },
        { type: 'nbd', export: 'vm1.disk1', socket: null, host: '10.0.0.5', port: 10810 },
      ],
    );
    assert.deepEqual(read.nics, [
      { mac: machine.nics[0]!.mac, network: 'br-prod', type: 'bridge', model: 'virtio' },
    ]);
    // The static address travels on the kernel command line, as with the QEMU driver.
    assert.deepEqual(read.boot, {
      kind: 'kernel',
      kernel: '/srv/k',
      initrd: null,
      cmdline: "console=ttyS0 x='<&>' haven.ip=10.0.0.9/24",
    });
    assert.equal(read.consoleFile, '/var/log/c.log');
  });

  it('writes the UUID it is given; finds a disk by its serial with its copy job; rewrites it onto an image', () => {
    const uuid = '1f2e3d4c-5b6a-4978-8877-665544332211';
    const xml = domainXml(
      validateMachineDefinition({
        name: 'copy',
        uuid,
        cpus: 1,
        memoryMiB: 128,
        disks: [{ diskId: 'disk0', nbdUri: 'nbd+unix:///v.disk0?socket=/run/views.sock' }],
        nics: [],
      }),
      { consoleFile: '/var/log/copy.log', domainType: 'qemu' },
    );
    assert.equal(parseDomainXml(xml).uuid, uuid);
    const mirrored = xml.replace(
      '</disk>',
      "<mirror type='file' job='copy' ready='yes'><format type='qcow2'/><source file='/srv/copy.qcow2'/></mirror></disk>",
    );
    const found = diskBySerial(mirrored, 'disk0');
    assert.equal(found?.disk.target, 'vda');
    assert.equal(found?.disk.source.type, 'nbd');
    assert.equal(found?.mirrorFile, '/srv/copy.qcow2');
    assert.equal(diskBySerial(xml, 'disk0')?.mirrorFile, null);
    assert.equal(diskBySerial(xml, 'disk9'), undefined);
    const moved = parseDomainXml(withDiskOnImage(xml, 'disk0', '/srv/copy.qcow2'));
    assert.deepEqual(moved.disks[0]!.source, { type: 'file', path: '/srv/copy.qcow2' });
    assert.equal(moved.disks[0]!.format, 'qcow2');
    assert.equal(moved.uuid, uuid);
    assert.equal(moved.consoleFile, '/var/log/copy.log');
    assert.throws(
      () =>
        validateMachineDefinition({
          name: 'x',
          uuid: 'nope',
          cpus: 1,
          memoryMiB: 128,
          disks: [{ diskId: 'disk0', nbdUri: 'nbd+unix:///v.disk0?socket=/run/views.sock' }],
          nics: [],
        }),
      { code: 'validation_failed', message: /UUID 'nope'/ },
    );
  });

  it('refuses malformed XML instead of guessing', () => {
    assert.throws(() => parseXml('<a><b></a>'), { code: 'internal', message: /'<\/a>' closes 'b'/ });
    assert.throws(() => parseXml('<a>'), { code: 'internal', message: /'<a>' is not closed/ });
    assert.deepEqual(parseXml('<a><![CDATA[x<y]]></a>').text, 'x<y');
  });
});
