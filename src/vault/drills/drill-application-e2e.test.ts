import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { DEMO_MACHINE } from '../../app/demo-machine.ts';
import { type Embedded, startEmbedded } from '../../app/start-embedded.ts';
import type { DrillRun } from '../../domain/drill.ts';
import type { Machine, RecoveryPoint } from '../../domain/model.ts';
import { embeddedApi, runOperation } from '../../testing/embedded-api.ts';
import { consoleOf, records } from '../../testing/guest-console.ts';
import { until as waitUntil } from '../../testing/until.ts';
import { requestMachineDrill } from './request-drill.ts';

/**
 * The application check of a real drill: the demo machine (a real guest
 * writing checksummed records) drilled on the isolated test network, with an
 * admin's script that asks the drill machine for its records over the test
 * network; a script that fails fails the drill, with its output as evidence.
 */
const run = promisify(execFile);
let dir: string;
let up: Embedded;
let machine: Machine;
const api = embeddedApi(() => up);
const until = <T>(what: string, probe: () => Promise<T | undefined | false>) =>
  waitUntil(what, probe, { timeoutMs: 180_000 });
const address = '10.213.79.2';

async function registerScript(name: string, text: string): Promise<void> {
  const file = join(dir, 'scripts', name);
  await writeFile(file, text);
  await chmod(file, 0o700);
}

async function drill(script: string): Promise<DrillRun> {
  const started = await requestMachineDrill(up.vault.context, machine, {
    point: 'latest-crash-consistent',
    testNetwork: null,
    checks: {
      filesystems: false,
      script: { name: script, timeoutSeconds: 30 },
      boot: { consolePattern: 'recovered \\d+ ok', timeoutSeconds: 120 },
    },
    timeLimitSeconds: 300,
    createdBy: 'test',
  });
  return until(`drill ${started.id.slice(0, 8)} to end`, async () => {
    const r = await up.vault.context.store.drillRuns.get(started.id);
    return r && r.state !== 'running' ? r : undefined;
  });
}

async function probeNamespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').filter((l) => l.startsWith('haven-probe-'));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'haven-drill-app-'));
  up = await startEmbedded({ dataDir: dir, port: 0, senderPollMs: 25, monitorIntervalMs: 500 });
  machine = (await api<{ machines: Machine[] }>('GET', '/machines')).body.machines.find(
    (m) => m.name === DEMO_MACHINE,
  )!;
  await registerScript(
    'check-records',
    [
      '#!/bin/sh',
      'echo "checking $HAVEN_MACHINE ($HAVEN_OPERATION of $HAVEN_POINT_TIME) at $HAVEN_DRILL_ADDRESS as $(id -u)"',
      'state=$(curl -fsS --max-time 5 "http://$HAVEN_DRILL_ADDRESS/records") || exit 2',
      'echo "$state"',
      'case "$state" in "recovered "*" ok"|"durable "*) exit 0 ;; *) exit 1 ;; esac',
    ].join('\n'),
  );
  await registerScript('fail-records', '#!/bin/sh\necho "record 3 is missing"\nexit 1\n');
});

after(async () => {
  await up?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('drill application check (real guest, isolated test network)', {
  skip: process.getuid?.() !== 0 && 'needs root',
}, () => {
  it('protects the demo machine, with a static address for its recovery copy', async () => {
    await until(
      'the demo guest to write records',
      async () => records(await consoleOf(up.vault.context, machine.activeHostId, DEMO_MACHINE)).durable >= 2,
    );
    await runOperation(
      api,
      machine.id,
      'enable-replication',
      { recoveryHostId: 'recovery', policyId: 'default' },
      180_000,
    );
    machine = (await up.vault.context.store.machines.get(machine.id))!;
    machine = {
      ...machine,
      recoverySettings: {
        ...machine.recoverySettings,
        nics: [
          {
            network: 'prod',
            recoveryNetwork: null,
            mac: null,
            ip: { mode: 'static', address, prefixLength: 24, gateway: null, dns: [] },
          },
        ],
      },
    };
    await up.vault.context.store.machines.update(machine);
    await until('a crash-consistent point', async () =>
      (
        await api<{ recoveryPoints: RecoveryPoint[] }>('GET', `/machines/${machine.id}/recovery-points`)
      ).body.recoveryPoints.some((p) => p.processed && p.type === 'crash-consistent'),
    );
  });

  it('passes when the script finds the recovered records over the test network', async () => {
    const ended = await drill('check-records');
    const checks = ended.machines[0]!.checks;
    const check = checks.find((c) => c.kind === 'application');
    assert.equal(ended.state, 'passed', `${ended.reason}\n${JSON.stringify(checks, null, 2)}`);
    assert.ok(check);
    assert.equal(check.result, 'passed');
    assert.equal(check.evidenceIsScriptOutput, true);
    assert.match(
      check.evidence!,
      new RegExp(`^checking ${DEMO_MACHINE} \\(drill of .+\\) at ${address} as [1-9]`, 'm'),
    );
    assert.match(check.evidence!, /^(recovered \d+ ok|durable \d+)$/m);
    assert.equal(ended.machines[0]!.cleanedUp, true);
    assert.deepEqual(await probeNamespaces(), []);
  });

  it('fails, with the script output as evidence, when the script fails; all is cleaned up', async () => {
    const ended = await drill('fail-records');
    const check = ended.machines[0]!.checks.find((c) => c.kind === 'application')!;
    assert.equal(ended.state, 'failed');
    assert.equal(check.result, 'failed');
    assert.match(check.summary, /^exit 1 after/);
    assert.match(check.evidence!, /record 3 is missing/);
    assert.match(ended.reason!, /script fail-records: exit 1/);
    assert.equal(ended.machines[0]!.cleanedUp, true);
    assert.deepEqual(await probeNamespaces(), []);
  });
});
