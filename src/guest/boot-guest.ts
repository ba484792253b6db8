import { type ChildProcess, spawn } from 'node:child_process';
import { HavenError } from '../errors/index.ts';
import { type GuestSettings, guestCommandLine } from './guest-command-line.ts';

/** The guest's data disk: an image file, or an NBD export (e.g. `nbd+unix:///d0?socket=/run/x.sock`). */
export type GuestDisk = { file: string; format?: 'raw' | 'qcow2' } | { nbdUri: string };

/** QEMU loads the kernel and initramfs itself (-kernel, -initrd, -append). */
export interface DirectKernelBoot {
  bootFromDisk?: false;
  kernel: string;
  initramfs: string;
  disk?: GuestDisk;
  guest?: GuestSettings;
  /** Extra kernel command line words. */
  cmdline?: readonly string[];
}

/**
 * The BIOS (SeaBIOS) boots the disk's MBR, as a physical server boots and as
 * its replica boots as a VM: the kernel, initramfs and command line are the
 * disk's own (e.g. copyServerBootDisk).
 */
export interface DiskBoot {
  bootFromDisk: true;
  disk: GuestDisk;
}

export type BootGuestOptions = (DirectKernelBoot | DiskBoot) & {
  /** Default 128 (64 does not boot the cloud kernel). */
  memoryMiB?: number;
  /** Unix socket path for QMP (`server=on,wait=off`). */
  qmpSocket?: string;
  /** QEMU also appends the console to this file. */
  serialLog?: string;
  /** Extra QEMU arguments, e.g. a `-nic` for a network test. */
  qemuArgs?: readonly string[];
};

export interface GuestExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * A running test guest. This is the test harness, not the product's QEMU
 * driver: it starts QEMU, reads the serial console line by line, and ends it.
 */
export interface GuestHandle {
  readonly pid: number;
  /** Console lines so far, with terminal escape sequences and CRs removed. */
  lines(): string[];
  /**
   * Resolves with the match of the first console line (from index `from`,
   * default 0) matching `pattern`; rejects on timeout or if QEMU exits first.
   */
  waitForLine(pattern: RegExp, timeoutMs?: number, from?: number): Promise<RegExpMatchArray>;
  /** SIGKILL by default: the guest loses power with no chance to flush. */
  kill(signal?: NodeJS.Signals): void;
  readonly exited: Promise<GuestExit>;
  /** Null while QEMU runs. */
  readonly exitCode: number | null;
  [Symbol.asyncDispose](): Promise<void>;
}

// CSI sequences (SeaBIOS clears the screen) and stray carriage returns.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the escape character is what we strip
const TERMINAL_NOISE = /\x1b\[[0-9;?]*[A-Za-z]|\x1bc|\r/g;

export function qemuArguments(options: BootGuestOptions): string[] {
  for (const [field, value] of [
    ['serialLog', options.serialLog],
    ['qmpSocket', options.qmpSocket],
  ] as const) {
    if (value?.includes(',')) {
      throw new HavenError(
        'validation_failed',
        `${field} '${value}' contains a comma, which QEMU options cannot take`,
        {
          field,
        },
      );
    }
  }
  const args = [
    '-accel',
    'tcg',
    '-machine',
    'pc',
    '-m',
    `${options.memoryMiB ?? 128}M`,
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-chardev',
    `stdio,id=console,signal=off${options.serialLog ? `,logfile=${options.serialLog}` : ''}`,
    '-serial',
    'chardev:console',
    ...(options.bootFromDisk
      ? []
      : [
          '-kernel',
          options.kernel,
          '-initrd',
          options.initramfs,
          '-append',
          guestCommandLine(options.guest, options.cmdline),
        ]),
    // The guest needs no entropy today, but /dev/urandom stalls without it on TCG.
    '-device',
    'virtio-rng-pci',
  ];
  if (options.qmpSocket) args.push('-qmp', `unix:${options.qmpSocket},server=on,wait=off`);
  const disk = options.disk;
  if (disk) {
    const file = 'file' in disk ? disk.file : disk.nbdUri;
    if (file.includes(',')) {
      throw new HavenError(
        'validation_failed',
        `disk '${file}' contains a comma, which QEMU's -drive cannot take`,
        {
          field: 'disk',
        },
      );
    }
    const format = 'file' in disk ? (disk.format ?? 'raw') : 'raw';
    args.push('-drive', `file=${file},format=${format},if=virtio`);
  }
  args.push(...(options.qemuArgs ?? []));
  return args;
}

/** Starts `qemu-system-x86_64` under TCG with the guest on a serial console. */
export function bootGuest(options: BootGuestOptions): GuestHandle {
  const child: ChildProcess = spawn('qemu-system-x86_64', qemuArguments(options), {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const consoleLines: string[] = [];
  let partial = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const waiter of waiters) waiter();
  };
  child.stdout!.setEncoding('latin1');
  child.stdout!.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const part of parts) consoleLines.push(part.replace(TERMINAL_NOISE, ''));
    notify();
  });
  child.stderr!.on('data', (chunk) => {
    stderr += chunk;
  });
  let exitCode: number | null = null;
  let done = false;
  const exited = new Promise<GuestExit>((resolve) => {
    child.on('error', (error) => {
      stderr += `${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'qemu-system-x86_64 is not installed (Debian package qemu-system-x86)' : error.message}\n`;
      done = true;
      notify();
      resolve({ code: null, signal: null });
    });
    child.on('close', (code, signal) => {
      if (partial) consoleLines.push(partial.replace(TERMINAL_NOISE, ''));
      partial = '';
      exitCode = code;
      done = true;
      notify();
      resolve({ code, signal });
    });
  });

  const describe = () =>
    `console (last 20 lines):\n${consoleLines.slice(-20).join('\n')}${stderr ? `\nqemu stderr:\n${stderr.trim()}` : ''}`;

  const waitForLine = (pattern: RegExp, timeoutMs = 30_000, from = 0): Promise<RegExpMatchArray> =>
    new Promise((resolve, reject) => {
      let next = from;
      const finish = (error: Error | undefined, match?: RegExpMatchArray) => {
        clearTimeout(timer);
        waiters.delete(check);
        if (error) reject(error);
        else resolve(match!);
      };
      const check = () => {
        for (; next < consoleLines.length; next++) {
          const match = consoleLines[next]!.match(pattern);
          if (match) return finish(undefined, match);
        }
        if (done) finish(new Error(`QEMU exited before a console line matched ${pattern}; ${describe()}`));
      };
      const timer = setTimeout(
        () => finish(new Error(`no console line matched ${pattern} within ${timeoutMs} ms; ${describe()}`)),
        timeoutMs,
      );
      waiters.add(check);
      check();
    });

  const kill = (signal: NodeJS.Signals = 'SIGKILL') => {
    if (!done) child.kill(signal);
  };

  return {
    pid: child.pid ?? -1,
    lines: () => [...consoleLines],
    waitForLine,
    kill,
    exited,
    get exitCode() {
      return exitCode;
    },
    async [Symbol.asyncDispose]() {
      kill();
      await exited;
    },
  };
}
