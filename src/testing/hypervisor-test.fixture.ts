/**
 * Test-only helpers for the hypervisor tests: real NBD peers for the disks,
 * and waiting on a machine's console. Not exported from index.ts.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { access, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { type GuestImage, guestCommandLine } from '../guest/index.ts';
import type { MachineDefinition } from '../hypervisor/hypervisor.ts';
import type { QemuDriver } from '../hypervisor/qemu-driver.ts';

export interface NbdPeer {
  uri: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Serves `args` (e.g. `['qemu-nbd', '-f', 'raw', FILE]` or `['nbdkit', 'memory', '1M']`)
 * on a unix socket under `socket`, export `name`; resolves once it listens.
 */
export async function startNbdPeer(
  kind: 'qemu-nbd' | 'nbdkit',
  socket: string,
  name: string,
  target: string[],
): Promise<NbdPeer> {
  const args =
    kind === 'qemu-nbd'
      ? ['--persistent', '--shared=4', '--cache=none', '-f', 'raw', '-x', name, '-k', socket, ...target]
      : ['-f', '--exit-with-parent', '-U', socket, '-e', name, ...target];
  // A socket file left by an earlier server would look like this one listening.
  await rm(socket, { force: true });
  const child = spawn(kind, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await access(socket);
      break;
    } catch {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`${kind} did not listen on ${socket}: ${stderr}`);
      }
      await sleep(20);
    }
  }
  return {
    uri: `nbd+unix:///${name}?socket=${socket}`,
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Polls the console until a line matches; returns the match and when it was seen. */
export async function waitForConsole(
  driver: QemuDriver,
  name: string,
  pattern: RegExp,
  timeoutMs = 60_000,
): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { lines } = await driver.consoleLog({ name });
    for (const line of lines) {
      const match = line.match(pattern);
      if (match) return match;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `no console line of '${name}' matched ${pattern} in ${timeoutMs} ms:\n${lines.slice(-20).join('\n')}`,
      );
    }
    await sleep(20);
  }
}

/** Runs a command; resolves with its exit code and output, never throws on failure. */
export function sh(
  command: string,
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: unknown }).code) || 1 : 0, stdout, stderr });
    });
  });
}

export async function shOrThrow(command: string, args: readonly string[]): Promise<string> {
  const result = await sh(command, args);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

/** The test guest as one small machine booting `image` with its data disk at `nbdUri`. */
export function testGuestMachine(name: string, nbdUri: string, image: GuestImage): MachineDefinition {
  return {
    name,
    cpus: 1,
    memoryMiB: 128,
    disks: [{ diskId: 'disk0', nbdUri }],
    nics: [],
    boot: { kernel: image.kernel, initrd: image.initramfs, cmdline: guestCommandLine({ rate: 10 }) },
  };
}

/**
 * A QEMU started by hand, not through Haven, with `drives` open for writing;
 * paused at start (-S): no guest is needed, it holds the images' locks.
 */
export function spawnHandStartedQemu(
  guestName: string,
  drives: readonly { file: string; format: 'raw' | 'qcow2' }[],
): ChildProcess {
  return spawn(
    'qemu-system-x86_64',
    [
      '-name',
      guestName,
      '-machine',
      'accel=tcg',
      '-S',
      '-nodefaults',
      '-display',
      'none',
      ...drives.flatMap((drive) => ['-drive', `file=${drive.file},format=${drive.format},if=virtio`]),
    ],
    { stdio: 'ignore' },
  );
}
