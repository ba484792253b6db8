import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Machine, ServerLinkSnapshot } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { bmcCall } from '../../host/bmc.ts';
import type { BmcAccess, BmcAction } from '../../host/host-services.ts';
import { type IpmiSimulator, startIpmiSimulator } from '../../testing/ipmi-simulator.fixture.ts';
import type { LifecycleStepContext } from './lifecycle-job.ts';
import { shutDownServer } from './server-shutdown.ts';

/**
 * The planned shutdown of a server whose agent is silent, through a real
 * BMC (ipmi_sim, its chassis a QEMU process with no OS): a soft off the
 * guest ignores is not called a shutdown; once the BMC reports the server
 * off, it is. The primary host is a function call: its `servers.status`
 * canned, its `servers.bmc` the host's own code.
 */
describe("a server's planned shutdown through its BMC", () => {
  let dir: string;
  let sim: IpmiSimulator;
  let output: Record<string, unknown> = {};
  const silent: ServerLinkSnapshot = {
    state: 'agent-silent',
    legs: [],
    agent: null,
    problem: 'no report for 45 s',
  };
  const ctx = () =>
    ({
      vault: {
        hosts: {
          isConnected: () => true,
          call: async (_hostId: string, method: string, params: unknown) => {
            if (method === 'servers.status') return silent;
            if (method === 'servers.bmc') return bmcCall(params as { access: BmcAccess; action: BmcAction });
            throw new Error(`unexpected ${method}`);
          },
        },
        store: { serverBmcPasswords: { get: async () => sim.access.password } },
      },
      job: { id: 'job-1' },
      signal: new AbortController().signal,
      host: () => ({ servers: { status: async () => silent } }),
      machine: {
        id: 'srv-1',
        name: 'db-01',
        activeHostId: 'primary',
        server: {
          writeBehind: null,
          nbdTimeoutSeconds: 30,
          enrolledAt: '2026-01-01T00:00:00Z',
          bmc: { ...sim.access, password: undefined },
        },
      } as unknown as Machine,
      progress: () => {},
      output: async (patch: Record<string, unknown>) => {
        output = { ...output, ...patch };
      },
    }) as unknown as LifecycleStepContext;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'haven-server-shutdown-'));
    sim = await startIpmiSimulator(join(dir, 'bmc'));
  });
  after(async () => {
    await sim?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('a soft off the server ignores is refused, naming it; a server its BMC reports off is shut down', async () => {
    assert.deepEqual(await bmcCall({ access: sim.access, action: 'power-on' }), { power: 'on' });
    await assert.rejects(shutDownServer(ctx(), { required: true, timeoutSeconds: 2 }), (error: unknown) => {
      assert.ok(error instanceof HavenError && error.code === 'conflict', String(error));
      assert.match(
        error.message,
        /physical server 'db-01' did not shut down through its agent or its BMC within 2 s: its agent is silent \(no report for 45 s\): the server or its link is down; its BMC still reports it powered on 2 s after a soft off \(its OS ignored the ACPI power button\)/,
      );
      return true;
    });
    assert.ok((await sim.calls()).includes('0x20 set shutdown 1'), 'the ACPI power button was pressed');
    assert.ok(await sim.qemuPid(), 'the server still runs');

    await bmcCall({ access: sim.access, action: 'power-off' });
    await shutDownServer(ctx(), { required: true, timeoutSeconds: 2 });
    assert.match(
      String(output.shutdown),
      /^shut down after [\d.]+ s \(its agent is silent .*; its BMC reports it off\)$/,
    );
  });
});
