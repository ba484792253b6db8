import type { ConsoleLog } from '../host/host-services.ts';
import type { VaultContext } from '../vault/vault-context.ts';

/** The serial console of a machine on a host, asked through the vault. */
export async function consoleOf(vault: VaultContext, hostId: string, vmName: string): Promise<string[]> {
  return (await vault.hosts.call<ConsoleLog>(hostId, 'hypervisor.consoleLog', { name: vmName })).lines;
}

/** The test guest's record workload, from its console: the highest `durable N`, and its first `recovered N ok`. */
export function records(lines: string[]): { durable: number; recovered: number | null } {
  let durable = 0;
  let recovered: number | null = null;
  for (const line of lines) {
    const d = line.match(/durable (\d+)/);
    if (d) durable = Math.max(durable, Number(d[1]));
    const r = line.match(/recovered (\d+) ok/);
    if (r && recovered === null) recovered = Number(r[1]);
  }
  return { durable, recovered };
}
