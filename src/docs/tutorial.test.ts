import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { collectOutput } from '../testing/child-process.ts';
import { type CloneShell, cloneShell, shellBlocks } from '../testing/clone-shell.ts';
import { type GroupProcess, interruptGroup } from '../testing/process-group.ts';
import { until } from '../testing/until.ts';

/**
 * The README and docs/tutorial.md, run verbatim as an operator would: `npm
 * start` as a real process from a directory laid out like the clone (the
 * default, relative `.haven/` data directory lands there), each shell line
 * run by `sh` in that directory, Ctrl-C (SIGINT to the process group) to
 * stop, and `npm start` again on the same data.
 */

let shell: CloneShell;
let haven: GroupProcess | null = null;
const sh = (line: string) => shell.sh(line);
const shOk = (line: string) => shell.shOk(line);

/** `npm start`, in its own process group like a terminal's foreground job; resolves once it says it is up. */
async function npmStart(): Promise<void> {
  const child = spawn('npm', ['start'], {
    cwd: shell.dir,
    env: shell.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { output, exited } = collectOutput(child);
  haven = { child, output, exited };
  let code: number | null | undefined;
  void exited.then((c) => {
    code = c;
  });
  await until('npm start to come up', async () => output().includes('is up.') || code !== undefined, {
    timeoutMs: 600_000,
  }).catch((error: Error) => assert.fail(`${error.message}:\n${output()}`));
  assert.ok(output().includes('is up.'), `npm start exited with ${code}:\n${output()}`);
}

/** Ctrl-C: SIGINT to the whole foreground process group; haven up stops cleanly. */
async function interrupt(): Promise<void> {
  const running = haven!;
  haven = null;
  // npm ends with its shell at once; haven up (same group) stops its machines, hosts and vault.
  await interruptGroup(running).catch((error: Error) =>
    assert.fail(`${error.message}:\n${running.output()}`),
  );
  assert.match(running.output(), /lost the vault/, 'the hosts saw the vault stop');
}

async function hostStatuses(): Promise<Record<string, string>> {
  const hosts = JSON.parse(await shOk('bin/haven hosts list --json')) as { name: string; status: string }[];
  return Object.fromEntries(hosts.map((h) => [h.name, h.status]));
}

before(async () => {
  // A directory laid out like the clone, so `.haven/` is a fresh, relative data directory.
  shell = await cloneShell('haven-clone-');
});

after(async () => {
  if (haven) {
    const group = -haven.child.pid!;
    await interrupt().catch(() => {
      try {
        process.kill(group, 'SIGKILL');
      } catch {}
    });
  }
  await shell?.remove();
});

describe('README and docs/tutorial.md, verbatim from the default data directory', () => {
  it("README: npm start, then health, hosts, policies and jobs through the CLI's .haven/", async () => {
    const [setup, commands] = await shellBlocks('README.md');
    // `npm ci` is done (node_modules is the clone's); `npm test` is what runs this test.
    assert.match(setup![0]!, /^npm ci && npm start\b/);
    await npmStart();
    assert.ok(commands!.length >= 4, commands!.join('\n'));
    for (const line of commands!) await shOk(line);
    assert.match(await shOk(commands![0]!), /"status":\s*"ok"/);
    assert.deepEqual(await hostStatuses(), { primary: 'connected', recovery: 'connected' });
  });

  it('README: the first npm start built the portal (with progress) and serves it at the URL its banner names', async () => {
    const output = haven!.output();
    assert.match(output, /portal: building .*first start/);
    assert.match(output, /portal: built in [\d.]+ s/);
    const url = output.match(/^ {2}portal: (http\S+)$/m)?.[1];
    assert.equal(url, 'http://127.0.0.1:8440/', output);
    const response = await fetch(url!);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
    const html = await response.text();
    assert.match(html, /<div id="root">/);
    const script = html.match(/<script[^>]+src="(\/assets\/[^"]+\.js)"/)?.[1];
    assert.ok(script, html);
    assert.equal((await fetch(new URL(script, url))).status, 200, 'the portal script is served too');
  });

  it('npm start again on the same data: the hosts reconnect and demo-01 is back', async () => {
    await interrupt();
    await npmStart();
    await until(
      'the hosts to reconnect after the restart',
      async () => Object.values(await hostStatuses()).every((s) => s === 'connected'),
      { timeoutMs: 30_000 },
    );
    const demo = JSON.parse(await shOk('bin/haven machines show demo-01 --json')) as { state: string };
    assert.equal(demo.state, 'unprotected');
    assert.match(haven!.output(), /demo: +demo-01 \(running on primary/);
    assert.doesNotMatch(haven!.output(), /portal: building/, 'an unchanged portal is not built again');
  });

  it('the tutorial: every haven command, in order, successfully', async () => {
    const blocks = await shellBlocks('docs/tutorial.md');
    assert.match(blocks[0]![0]!, /^npm ci && npm start\b/, 'the tutorial starts Haven first (done above)');
    const commands = blocks.flat().filter((line) => line.startsWith('haven '));
    assert.ok(commands.length >= 10, `found ${commands.length} commands`);
    for (const line of commands) await shOk(line);
    const shown = JSON.parse(await shOk('haven machines show demo-01 --json')) as { state: string };
    assert.equal(shown.state, 'protected', 'the tutorial ends with demo-01 protected again');
    const again = await sh('haven commit demo-01');
    assert.equal(again.code, 1, 'committing a protected machine is refused');
    assert.match(again.stderr, /is protected: commit is not allowed there; allowed: /);
  });

  it('npm start again with demo-01 protected: it runs again and replication resumes (new points, healthy)', async () => {
    await interrupt();
    await npmStart();
    assert.match(haven!.output(), /demo: +demo-01 \(running on primary, protected\)/);
    const restartedAt = new Date().toISOString();
    const show = async () =>
      JSON.parse(await shOk('bin/haven machines show demo-01 --json')) as {
        health: string;
        replication: { state: string } | null;
      };
    const points = async () =>
      JSON.parse(await shOk('bin/haven machines points demo-01 --json')) as Array<{ time: string }>;
    await until(
      'a recovery point made after the restart',
      async () => (await points()).some((p) => p.time > restartedAt),
      { timeoutMs: 60_000 },
    );
    const shown = await until(
      'demo-01 to be healthy again',
      async () => {
        const m = await show();
        return m.health === 'healthy' ? m : undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.equal(shown.replication?.state, 'streaming');
  });
});
