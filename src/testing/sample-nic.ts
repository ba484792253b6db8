import type { NicSettings } from '../domain/model.ts';

/** A NIC with a fixed MAC and a full static address (gateway, DNS), as tests of recovery settings use it. */
export function staticNic(network: string): NicSettings {
  return {
    network,
    recoveryNetwork: null,
    mac: '52:54:00:12:34:56',
    ip: { mode: 'static', address: '10.0.0.5', prefixLength: 24, gateway: '10.0.0.1', dns: ['10.0.0.2'] },
  };
}
