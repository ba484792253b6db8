/**
 * App-consistent points (SPEC §3): quiesce the guest's applications, put an
 * app-consistent marker in the machine's journals, thaw. Everything is
 * bounded by `timeoutMs` from the start of the freeze: a hung hook or agent
 * is killed/abandoned, the thaw runs anyway, and no marker is added (a point
 * after a failed freeze would claim a consistency it does not have).
 *
 * Machines without a guest agent use a per-machine hook script, run on the
 * vault host (where the operator's credentials to reach the guest live):
 * `<hook> freeze` then `<hook> thaw`, with HAVEN_MACHINE_ID and
 * HAVEN_MACHINE_NAME in its environment.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { isoNow } from '../../clock/index.ts';
import type { Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import type { DiskService } from '../../host/host-services.ts';
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
