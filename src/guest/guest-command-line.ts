import { HavenError } from '../errors/index.ts';

/** What the guest's init does, passed on the kernel command line (see guest-init.sh). */
export interface GuestSettings {
  /**
   * `records` (default) writes checksummed records to /data; `idle` only
   * mounts it; `bench` runs disk benchmark rounds on a file in /data.
   */
  workload?: 'records' | 'idle' | 'bench';
  /** Sizes of the `bench` workload: its file in MiB and the timed single writes per round. */
  bench?: { fileMiB: number; latencySamples: number };
  /** Records per second (approximate; default 2). Forking sha256sum per record caps TCG at about 50/s. */
  rate?: number;
  /** Records written per fsync (default 1). */
  batch?: number;
  /** Static address for eth0, e.g. `10.0.0.5/24`, with an optional default gateway. */
  ip?: { address: string; gateway?: string };
  /**
   * IPv4 addresses the guest pings about once a second after configuring
   * eth0, printing `probe <addr> reachable` or `probe <addr> unreachable` on
   * the console: how a test sees what a guest's network lets it reach.
   */
  probe?: readonly string[];
}

const ADDRESS = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * The kernel command line for the test guest: serial console, reboot on
 * panic (QEMU runs with -no-reboot, so a panic ends the process instead of
 * hanging a test), `quiet` so kernel messages do not interleave with the
 * workload's lines, then the haven.* settings and any extras.
 */
export function guestCommandLine(settings: GuestSettings = {}, extra: readonly string[] = []): string {
  const words = ['console=ttyS0', 'panic=-1', 'quiet'];
  if (settings.workload) words.push(`haven.workload=${settings.workload}`);
  if (settings.rate !== undefined) {
    if (!(settings.rate > 0 && settings.rate <= 1000)) {
      throw new HavenError(
        'validation_failed',
        `guest rate ${settings.rate} must be in (0, 1000] records/s`,
        {
          field: 'rate',
        },
      );
    }
    words.push(`haven.rate=${settings.rate}`);
  }
  if (settings.batch !== undefined) {
    if (!Number.isInteger(settings.batch) || settings.batch < 1) {
      throw new HavenError('validation_failed', `guest batch ${settings.batch} must be a positive integer`, {
        field: 'batch',
      });
    }
    words.push(`haven.batch=${settings.batch}`);
  }
  if (settings.bench) {
    const { fileMiB, latencySamples } = settings.bench;
    if (
      !Number.isInteger(fileMiB) ||
      fileMiB < 1 ||
      !Number.isInteger(latencySamples) ||
      latencySamples < 1
    ) {
      throw new HavenError(
        'validation_failed',
        `guest bench file ${fileMiB} MiB and ${latencySamples} latency samples must be positive integers`,
        { field: 'bench' },
      );
    }
    words.push(`haven.bench=${fileMiB},${latencySamples}`);
  }
  if (settings.ip) {
    const { address, gateway } = settings.ip;
    if (!ADDRESS.test(address) || (gateway !== undefined && !IPV4.test(gateway))) {
      throw new HavenError(
        'validation_failed',
        `guest ip '${address}'${gateway ? ` via '${gateway}'` : ''} must be IPv4 addr/prefix with an optional IPv4 gateway`,
        { field: 'ip' },
      );
    }
    words.push(`haven.ip=${address}${gateway ? `,${gateway}` : ''}`);
  }
  if (settings.probe) {
    const { probe } = settings;
    if (probe.length === 0 || probe.some((address) => !IPV4.test(address))) {
      throw new HavenError(
        'validation_failed',
        `guest probe [${probe.join(', ')}] must be one or more IPv4 addresses`,
        { field: 'probe' },
      );
    }
    words.push(`haven.probe=${probe.join(',')}`);
  }
  for (const word of extra) {
    if (/\s/.test(word) || word === '') {
      throw new HavenError('validation_failed', `kernel argument '${word}' must be one non-empty word`, {
        field: 'cmdline',
      });
    }
    words.push(word);
  }
  return words.join(' ');
}
