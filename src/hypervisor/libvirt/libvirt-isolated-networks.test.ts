import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateMachineDefinition } from '../machine-definition.ts';
import { domainXml, parseDomainXml } from './domain-xml.ts';
import {
  isolatedBridgeName,
  isolatedNetworkName,
  isolatedNetworkXml,
  parseNetworkXml,
} from './libvirt-isolated-networks.ts';

describe('libvirt isolated networks (definitions)', () => {
  it('an isolated network has no forward, no address, a bridge of its own, and Haven’s mark', () => {
    const name = isolatedNetworkName('drill-a');
    assert.equal(name, 'haven-test-drill-a');
    const bridge = isolatedBridgeName(name);
    assert.match(bridge, /^hvt[0-9a-f]{12}$/);
    assert.ok(bridge.length <= 15);
    assert.notEqual(isolatedBridgeName(isolatedNetworkName('drill-b')), bridge);
    assert.deepEqual(parseNetworkXml(isolatedNetworkXml(name)), {
      name,
      haven: true,
      bridge,
      forward: null,
      addresses: 0,
    });
  });

  it("reads an operator's NAT network as forwarding, with an address, not Haven's", () => {
    const read = parseNetworkXml(`<network>
  <name>default</name>
  <forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'><dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip>
</network>`);
    assert.deepEqual(read, { name: 'default', haven: false, bridge: 'virbr0', forward: 'nat', addresses: 1 });
  });

  it("puts a drill's isolated NIC on the isolated libvirt network, a production NIC on its bridge", () => {
    const machine = validateMachineDefinition({
      name: 'vm1-test',
      cpus: 1,
      memoryMiB: 128,
      disks: [{ diskId: 'disk0', nbdUri: 'nbd+unix:///v.disk0?socket=/run/haven/nbd.sock' }],
      nics: [
        { network: 'drill-a', mac: '52:54:00:00:00:01', isolated: true },
        { network: 'br-prod', mac: '52:54:00:00:00:02' },
      ],
    });
    const read = parseDomainXml(domainXml(machine, { consoleFile: '/var/log/c.log', domainType: 'qemu' }));
    assert.deepEqual(read.nics, [
      { mac: '52:54:00:00:00:01', network: 'haven-test-drill-a', type: 'network', model: 'virtio' },
      { mac: '52:54:00:00:00:02', network: 'br-prod', type: 'bridge', model: 'virtio' },
    ]);
  });
});
