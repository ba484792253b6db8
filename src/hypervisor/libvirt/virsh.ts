import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HavenError } from '../../errors/index.ts';

const DEFAULT_TIMEOUT_MS = 60_000;

/** What libvirt's refusal means for the caller, by the text virsh prints. */
const REFUSALS: Array<{
  pattern: RegExp;
  code: 'not_found' | 'operation_not_allowed' | 'unreachable' | 'not_available';
}> = [
  {
    pattern: /Domain not found|failed to get domain|Network not found|failed to get network/i,
    code: 'not_found',
  },
  // The domain has no guest agent channel; one that is configured but silent is unreachable.
  { pattern: /guest agent is not configured/i, code: 'not_available' },
  {
    pattern: /guest agent is not responding|guest agent is not connected|agent not available/i,
    code: 'unreachable',
  },
  {
    pattern: /failed to connect to the hypervisor|Cannot recv data|End of file while reading/i,
    code: 'unreachable',
  },
  {
    pattern: /Requested operation is not valid|is already active|is not running|not running/i,
    code: 'operation_not_allowed',
  },
];

/**
 * `virsh -c URI ...`, run without a shell. A failure becomes a HavenError
 * naming the domain and carrying virsh's own message (its `error:` lines).
 */
export class Virsh {
  readonly uri: string;
  readonly #binary: string;

  constructor(uri: string, options: { binary?: string } = {}) {
    this.uri = uri;
    this.#binary = options.binary ?? 'virsh';
  }

  /** Runs one virsh command; `domain` names the domain it is about (for the error). */
  run(
    args: string[],
    options: { domain?: string; timeoutMs?: number; input?: string } = {},
  ): Promise<string> {
    const { domain } = options;
    return new Promise((resolve, reject) => {
      execFile(
        this.#binary,
        ['-c', this.uri, ...args],
        { timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
        (error, stdout, stderr) => {
          if (!error) return resolve(stdout);
          reject(
            this.#error(args[0] ?? '', domain, error as NodeJS.ErrnoException & { killed?: boolean }, stderr),
          );
        },
      );
    });
  }

  /** `virsh define`/`net-define` of `xml`: virsh reads it from a file (its stdin, a socket here, cannot be opened by name). */
  async defineXml(
    command: 'define' | 'net-define',
    xml: string,
    options: { domain?: string } = {},
  ): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'haven-define-'));
    try {
      await writeFile(join(dir, 'definition.xml'), xml, { mode: 0o600 });
      return await this.run([command, join(dir, 'definition.xml')], options);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  #error(
    command: string,
    domain: string | undefined,
    error: NodeJS.ErrnoException & { killed?: boolean },
    stderr: string,
  ): HavenError {
    const subject = domain === undefined ? '' : ` domain '${domain}'`;
    const details = { ...(domain === undefined ? {} : { machine: domain }), uri: this.uri, command };
    if (error.code === 'ENOENT') {
      return new HavenError(
        'not_available',
        `${this.#binary} is not installed on this host (Debian package libvirt-clients)`,
        { ...details, install: 'libvirt-clients' },
      );
    }
    if (error.killed) {
      return new HavenError(
        'unreachable',
        `libvirt at ${this.uri} did not answer 'virsh ${command}'${subject} in time`,
        details,
      );
    }
    const reason =
      stderr
        .split('\n')
        .map((line) => line.replace(/^error:\s*/, '').trim())
        .filter(Boolean)
        .join('; ') || error.message;
    const code = REFUSALS.find((refusal) => refusal.pattern.test(reason))?.code ?? 'internal';
    return new HavenError(code, `libvirt (${this.uri}) refused 'virsh ${command}'${subject}: ${reason}`, {
      ...details,
      libvirtError: reason,
    });
  }
}
