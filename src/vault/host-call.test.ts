import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostServices } from './host-call.ts';
import type { VaultContext } from './vault-context.ts';

test('a call that asks its host to wait lasts that long and a little more; any other call, the common bound', async () => {
  const bounds: Array<[string, number | undefined]> = [];
  const vault = {
    hosts: {
      call: async (_host: string, method: string, _params: unknown, options?: { timeoutMs?: number }) => {
        bounds.push([method, options?.timeoutMs]);
        return null;
      },
    },
  } as unknown as VaultContext;
  const host = hostServices(vault, 'h1');
  await host.replica.listPoints({ machineId: 'm1' });
  await host.replica.checkFilesystems({ viewId: 'v1', timeoutMs: 5 * 60_000 });
  await host.servers.shutdown({ machineId: 'm1', timeoutMs: 1000 });
  assert.deepEqual(bounds, [
    ['replica.listPoints', 120_000],
    ['replica.checkFilesystems', 330_000],
    ['servers.shutdown', 120_000],
  ]);
});
