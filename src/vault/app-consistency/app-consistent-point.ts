/**
 * App-consistent points (SPEC §3): quiesce the guest's applications, put an
 * app-consistent marker in the machine's journals, thaw. Everything is
 * bounded by `timeoutMs` from the start of the freeze: a hung hook or agent
 * is killed/abandoned, the thaw runs anyway, and no marker is added (a point
 * after a failed freeze would claim a consistency it does not have).
 *
 * Imported libvirt domains with a guest agent channel are quiesced through
 * the agent (`guestAgentQuiescer`: the host freezes the guest's file systems,
 * libvirt's domfsfreeze). Other machines use the vault's hook script, run on
 * the vault host (where the operator's credentials to reach the guest live):
 * `<hook> freeze` then `<hook> thaw`, with HAVEN_MACHINE_ID and
 * HAVEN_MACHINE_NAME in its environment. An imported domain with neither
 * gets one alert saying why (`reportNoQuiescer`), not a failure every interval.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { isoNow } from '../../clock/index.ts';
import { type Machine, vmNameOf } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { DiskService, Hypervisor } from '../../host/host-services.ts';
import type { VaultContext } from '../vault-context.ts';

export interface Quiescer {
  /** Resolves once the guest's writes are quiesced; `signal` aborts on timeout. */
  freeze(signal: AbortSignal): Promise<void>;
  thaw(signal: AbortSignal): Promise<void>;
}

/** Runs the hook with one argument; kills its whole process group when aborted. */
function runHook(path: string, phase: 'freeze' | 'thaw', env: Record<string, string>, signal: AbortSignal) {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(path, [phase], {
      env: { ...process.env, ...env, HAVEN_PHASE: phase },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-2000);
    });
    const kill = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      reject(new HavenError('unreachable', `hook '${path} ${phase}' did not finish in time and was killed`));
    };
    if (signal.aborted) kill();
    signal.addEventListener('abort', kill, { once: true });
    child.on('error', (e) =>
      reject(new HavenError('internal', `hook '${path}' could not run: ${e.message}`)),
    );
    child.on('exit', (code, sig) => {
      signal.removeEventListener('abort', kill);
      if (code === 0) resolve();
      else {
        reject(
          new HavenError(
            'internal',
            `hook '${path} ${phase}' failed (${sig ?? `exit ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`,
          ),
        );
      }
    });
  });
}

export function hookQuiescer(path: string, machine: Pick<Machine, 'id' | 'name'>): Quiescer {
  const env = { HAVEN_MACHINE_ID: machine.id, HAVEN_MACHINE_NAME: machine.name };
  return {
    freeze: (signal) => runHook(path, 'freeze', env, signal),
    thaw: (signal) => runHook(path, 'thaw', env, signal),
  };
}

/** `work`, or a rejection naming `what` as soon as `signal` aborts (the work is abandoned, not awaited). */
function abandonedOnAbort<T>(what: string, signal: AbortSignal, work: Promise<T>): Promise<T> {
  work.catch(() => undefined);
  if (signal.aborted) return Promise.reject(abandoned(what));
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(abandoned(what));
    signal.addEventListener('abort', abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

function abandoned(what: string): HavenError {
  return new HavenError('unreachable', `${what} did not finish in time and was abandoned`);
}

/**
 * Freezes the guest's file systems through its QEMU guest agent, on the host
 * that runs it. The host ends its own call after `timeoutMs` too, so an
 * agent that does not answer holds nothing past the bound. A freeze that
 * froze no file system quiesced nothing: it fails rather than claim a point.
 */
export function guestAgentQuiescer(
  hypervisor: Pick<Hypervisor, 'freezeFilesystems' | 'thawFilesystems'>,
  machine: Pick<Machine, 'name' | 'importedFrom'>,
  timeoutMs: number,
): Quiescer {
  const name = vmNameOf(machine);
  return {
    freeze: async (signal) => {
      const frozen = await abandonedOnAbort(
        `the guest agent's freeze of domain '${name}'`,
        signal,
        hypervisor.freezeFilesystems({ name, timeoutMs }),
      );
      if (frozen.filesystems === 0) {
        throw new HavenError('internal', `the guest agent of domain '${name}' froze no file system`, {
          machine: machine.name,
        });
      }
    },
    thaw: async (signal) => {
      await abandonedOnAbort(
        `the guest agent's thaw of domain '${name}'`,
        signal,
        hypervisor.thawFilesystems({ name, timeoutMs }),
      );
    },
  };
}

export interface AppConsistentResult {
  ok: boolean;
  markerId: string | null;
  /** From the freeze asked to the thaw done. */
  frozenMs: number;
  error: string | null;
}

export async function takeAppConsistentPoint(options: {
  machineIds: string[];
  quiescer: Quiescer;
  disk: Pick<DiskService, 'insertMarker'>;
  timeoutMs: number;
  /** Set for a multi-machine app-consistent cut. */
  groupPointId?: string | null;
}): Promise<AppConsistentResult> {
  const started = Date.now();
  const freezeBound = new AbortController();
  const timer = setTimeout(() => freezeBound.abort(), options.timeoutMs);
  let markerId: string | null = null;
  let error: string | null = null;
  try {
    await options.quiescer.freeze(freezeBound.signal);
    if (freezeBound.signal.aborted) throw new HavenError('unreachable', 'the freeze ended after its bound');
    const marker = await options.disk.insertMarker({
      machineIds: options.machineIds,
      type: 'app-consistent',
      groupPointId: options.groupPointId ?? null,
    });
    markerId = marker.markerId;
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  } finally {
    clearTimeout(timer);
    // The thaw always runs, with its own bound, even when the freeze timed out half-done.
    const thawBound = new AbortController();
    const thawTimer = setTimeout(() => thawBound.abort(), options.timeoutMs);
    try {
      await options.quiescer.thaw(thawBound.signal);
    } catch (e) {
      error ??= `thaw: ${e instanceof Error ? e.message : String(e)}`;
    } finally {
      clearTimeout(thawTimer);
    }
  }
  return {
    ok: error === null,
    markerId: error === null ? markerId : null,
    frozenMs: Date.now() - started,
    error,
  };
}

/** Raises (or clears) the machine's app-consistency alert from a result. */
export async function reportAppConsistency(
  vault: Pick<VaultContext, 'store' | 'clock'>,
  machine: Pick<Machine, 'id' | 'name'>,
  result: AppConsistentResult,
): Promise<void> {
  const key = `app-consistent:${machine.id}`;
  if (result.ok) {
    await vault.store.alerts.clear(key, isoNow(vault.clock));
    return;
  }
  await vault.store.alerts.raise({
    id: randomUUID(),
    key,
    severity: 'warning',
    message: `Machine '${machine.name}': app-consistent point failed: ${result.error}`,
    subjectType: 'machine',
    subjectId: machine.id,
    raisedAt: isoNow(vault.clock),
    clearedAt: null,
  });
}

/** The key of the alert saying a machine gets no app-consistent points at all. */
function noQuiescerKey(machineId: string): string {
  return `app-consistent-unavailable:${machineId}`;
}

/**
 * The machine's policy asks for app-consistent points and nothing can
 * quiesce it: one open alert saying why (raising it again while open does
 * nothing), instead of a failed attempt every interval.
 */
export async function reportNoQuiescer(
  vault: Pick<VaultContext, 'store' | 'clock'>,
  machine: Pick<Machine, 'id' | 'name'>,
  reason: string,
): Promise<void> {
  await vault.store.alerts.raise({
    id: randomUUID(),
    key: noQuiescerKey(machine.id),
    severity: 'warning',
    message: `Machine '${machine.name}': no app-consistent points although its policy asks for them: ${reason}`,
    subjectType: 'machine',
    subjectId: machine.id,
    raisedAt: isoNow(vault.clock),
    clearedAt: null,
  });
}

/** It can be quiesced (again): the alert of `reportNoQuiescer` is cleared. */
export async function clearNoQuiescer(
  vault: Pick<VaultContext, 'store' | 'clock'>,
  machine: Pick<Machine, 'id'>,
): Promise<void> {
  await vault.store.alerts.clear(noQuiescerKey(machine.id), isoNow(vault.clock));
}
