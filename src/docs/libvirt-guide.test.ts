import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Machine } from '../domain/model.ts';
import { findQemuProcesses } from '../hypervisor/qemu-process.ts';
import { freePort } from '../testing/child-process.ts';
import { type BackgroundUp, type CloneShell, cloneShell, shellBlocks } from '../testing/clone-shell.ts';
import { defineTestDomain, type LibvirtTestDomain } from '../testing/libvirt-domain.fixture.ts';
import { ensureLibvirtd, type Libvirtd, libvirtMissing } from '../testing/libvirtd.fixture.ts';
import { until } from '../testing/until.ts';

const skip = await libvirtMissing();

/**
 * docs/libvirt.md, run as an operator would on a real libvirtd: each line of
 * its ```sh blocks, in order, by `sh` in a directory laid out like the clone
 * (`haven` is bin/haven on the PATH, `.haven/` the relative default), with
 * `haven up` started in the background as in a first terminal. The page's
 * example names (domain web-1, bridge br0, its folders)
 * are replaced by this test's own, so it never touches a real domain.
 */
describe('docs/libvirt.md, every command, on a real libvirtd', { skip }, () => {
  let libvirtd: Libvirtd;
  let domain: LibvirtTestDomain;
  let shell: CloneShell;
  let store: string;
  let up: BackgroundUp | null = null;
  const suffix = randomBytes(3).toString('hex');
  const name = `haven-guide-${suffix}`;
  let replacements: Array<[string, string]> = [];

  const substitute = (line: string) =>
    replacements.reduce((text, [from, to]) => text.split(from).join(to), line);

  const shOk = (line: string) => shell.shOk(line);

  async function show(): Promise<Machine> {
    return JSON.parse(await shOk(`haven machines show ${name} --json`)) as Machine;
  }

  /** `haven up …` as typed in a first terminal (see CloneShell.startUp). */
  async function startUp(line: string): Promise<void> {
    up = await shell.startUp(line, { timeoutMs: 60_000 });
  }

  /** The page's ```sh blocks, section by section, with this test's names. */
  async function blocks(): Promise<string[][]> {
    return (await shellBlocks('docs/libvirt.md')).map((block) => block.map(substitute));
  }

  before(async () => {
    libvirtd = await ensureLibvirtd();
    domain = await defineTestDomain(libvirtd.uri, name);
    await execFileOk('virsh', ['-c', libvirtd.uri, 'start', name]);
    shell = await cloneShell('haven-guide-');
    // The page's /srv/haven: ours, searchable by libvirt-qemu (the page creates images/ in it).
    const srv = await mkdtemp('/tmp/haven-guide-store-');
    await chmod(srv, 0o755);
    store = join(srv, 'images');
    replacements = [
      ['web-1-recovered', `${name}-recovered`],
      ['web-1', name],
      ['/srv/haven/images', store],
      ['/var/lib/libvirt/images', domain.dir],
      ['br0', domain.bridge],
      ['qemu:///system', libvirtd.uri],
    ];
  });

  after(async () => {
    await up?.stop();
    const recovered = `${name}-recovered`;
    await execFileOk('virsh', ['-c', libvirtd.uri, 'destroy', recovered]).catch(() => {});
    await execFileOk('virsh', ['-c', libvirtd.uri, 'undefine', recovered]).catch(() => {});
    await rm(`/var/log/libvirt/qemu/${recovered}.log`, { force: true });
    await rm(`/var/log/libvirt/qemu/${recovered}-console.log`, { force: true });
    await domain?.remove();
    await shell?.remove();
    if (store) await rm(join(store, '..'), { recursive: true, force: true });
    await libvirtd?.stop();
  });

  it('protects a running domain, drills, fails over, commits and fails back, as the page says', async () => {
    const sections = await blocks();
    assert.ok(sections.length >= 4, `found ${sections.length} sh blocks`);
    const [prepare, start, ...rest] = sections;
    for (const line of prepare!) await shOk(line);
    assert.equal(start!.length, 1);
    assert.match(start![0]!, /^haven up --libvirt /);
    // Its own ports: the README's test runs `npm start` on the default ones, maybe at the same time.
    await startUp(`${start![0]!} --port ${await freePort()} --control-port ${await freePort()}`);
    await until('both hosts to connect', async () => {
      const hosts = JSON.parse(await shOk('haven hosts list --json')) as Array<{ status: string }>;
      return hosts.length === 2 && hosts.every((h) => h.status === 'connected');
    });
    const pids = await findQemuProcesses(`guest=${name},`);
    assert.equal(pids.length, 1, 'the domain runs under one QEMU');
    for (const block of rest) {
      for (const line of block) {
        const out = await shOk(line);
        if (line.startsWith('haven enable-replication')) {
          const m = await until(
            'the mirror to be armed',
            async () => {
              const shown = await show();
              return shown.replication?.mirror?.state === 'armed' ? shown : undefined;
            },
            { timeoutMs: 60_000 },
          );
          assert.equal(m.state, 'protected');
          // The domain was protected where it ran: the same QEMU process.
          assert.deepEqual(await findQemuProcesses(`guest=${name},`), pids);
        }
        if (line.startsWith('haven cleanup-test-failover')) assert.equal((await show()).state, 'protected');
        if (line.startsWith('haven failover')) assert.equal((await show()).state, 'failed-over');
        // After commit, the recovered domain reads a local qcow2 in the storage folder, not the view.
        if (line.startsWith('virsh domblklist')) assert.match(out, new RegExp(`${store}/\\S+\\.qcow2`), out);
      }
    }
    // The guide ends with the original domain back on its own image, protected again.
    const done = await until(
      'the failed-back domain to be protected and armed',
      async () => {
        const m = await show();
        // The replication snapshot is the monitor's last sample: it may still show the reverse mirror for a tick.
        const mirror = m.replication?.mirror;
        return m.state === 'protected' && mirror?.state === 'armed' && mirror.domain === name ? m : undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.equal(done.replication?.mirror?.domain, name);
  });
});

function execFileOk(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(file, args, (error, stdout, stderr) =>
      error ? reject(new Error(`${file} ${args.join(' ')}: ${stderr}`)) : resolve(stdout),
    ),
  );
}
