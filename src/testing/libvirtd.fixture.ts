/**
 * A running libvirtd for the libvirt tests: the system one when it answers,
 * else virtlogd and libvirtd started here in the background (`libvirtd -l`
 * fails on the project machines, and nothing started by hand survives to a CI
 * run). Without the Debian packages the tests skip outside CI and fail in CI.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { chmod, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const LIBVIRT_URI = 'qemu:///system';
const PACKAGES = 'libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu';

export interface Libvirtd {
  uri: string;
  /** Ends the daemons this fixture started (none when libvirtd was already running). */
  stop(): Promise<void>;
}

async function answers(uri: string): Promise<boolean> {
  try {
    await run('virsh', ['-c', uri, 'version'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

async function installed(binary: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${binary}`]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Why the libvirt tests cannot run here (a string for `describe`'s `skip`), or
 * false when they can. In CI a missing libvirt is a failure, never a skip.
 */
export async function libvirtMissing(): Promise<string | false> {
  const missing: string[] = [];
  for (const binary of ['virsh', 'libvirtd', 'virtlogd'])
    if (!(await installed(binary))) missing.push(binary);
  if (missing.length === 0) return false;
  const reason = `libvirt is not installed (${missing.join(', ')} missing): apt-get install --no-install-recommends ${PACKAGES}`;
  if (process.env.CI === 'true') throw new Error(`${reason} (.ci/run installs it)`);
  return reason;
}

/**
 * /dev/kvm as Debian's udev rule leaves it (group kvm, 0660). Without udev it
 * stays root-only: libvirt then probes QEMU with KVM (as root) but finds KVM
 * unusable for its QEMU user, judges its capability cache stale on every call
 * and re-probes QEMU, ~30 s per `virsh define`. Domains still run under TCG.
 */
async function matchKvmDeviceToUdev(): Promise<void> {
  try {
    const device = await stat('/dev/kvm');
    if ((device.mode & 0o060) === 0o060) return;
    await run('chgrp', ['kvm', '/dev/kvm']);
    await chmod('/dev/kvm', 0o660);
  } catch {
    // No /dev/kvm, or no kvm group: libvirt sees no KVM at all, which is consistent too.
  }
}

/** Makes sure `virsh -c qemu:///system` answers, starting the daemons when it does not. */
export async function ensureLibvirtd(): Promise<Libvirtd> {
  await matchKvmDeviceToUdev();
  if (await answers(LIBVIRT_URI)) return { uri: LIBVIRT_URI, stop: async () => {} };
  const logFile = join(tmpdir(), 'haven-test-libvirtd.log');
  const started: ChildProcess[] = [];
  const startDaemon = (binary: string) => {
    const log = openSync(logFile, 'a');
    const child = spawn(binary, [], { detached: true, stdio: ['ignore', log, log] });
    child.unref();
    started.push(child);
    return child;
  };
  const stop = async () => {
    for (const child of started.reverse()) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const killed = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
      if (!killed) child.kill('SIGKILL');
    }
  };
  startDaemon('virtlogd');
  const libvirtd = startDaemon('libvirtd');
  const deadline = Date.now() + 30_000;
  while (!(await answers(LIBVIRT_URI))) {
    // Another test file may have started it meanwhile: then ours exits, and that one answers.
    if ((libvirtd.exitCode !== null && !(await answers(LIBVIRT_URI))) || Date.now() > deadline) {
      await stop();
      throw new Error(`libvirtd did not start within 30 s (exit ${libvirtd.exitCode}); see ${logFile}`);
    }
    await sleep(200);
  }
  return { uri: LIBVIRT_URI, stop };
}
