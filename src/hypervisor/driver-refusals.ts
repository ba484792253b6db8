/**
 * What every hypervisor driver refuses, and the words it uses: one home, so
 * the QEMU and libvirt drivers answer the vault alike.
 */
import { HavenError } from '../errors/index.ts';
import type { MachinePowerState } from './hypervisor.ts';

export type ShutdownTimeoutAction = 'fail' | 'stop' | 'power-off';

/** Checks a shutdown's parameters; returns what to do on timeout (default 'fail'). */
export function shutdownTimeoutAction(
  name: string,
  timeoutSeconds: number,
  onTimeout: ShutdownTimeoutAction | undefined,
): ShutdownTimeoutAction {
  const action = onTimeout ?? 'fail';
  if (!(timeoutSeconds >= 0) || !['fail', 'stop', 'power-off'].includes(action)) {
    throw new HavenError(
      'validation_failed',
      `shutdown of '${name}' needs timeoutSeconds ≥ 0 and onTimeout fail, stop or power-off`,
      { machine: name, field: 'timeoutSeconds' },
    );
  }
  return action;
}

export function shutdownTimedOut(name: string, timeoutSeconds: number, state: MachinePowerState): HavenError {
  return new HavenError(
    'conflict',
    `machine '${name}' did not power down within ${timeoutSeconds} s of the ACPI powerdown request and is ${state}; power it off, or shut it down with onTimeout 'stop' or 'power-off'`,
    { machine: name, state, timeoutSeconds, allowed: ['powerOff', 'fence', 'shutdown'] },
  );
}

export function pausedCannotStart(name: string): HavenError {
  return new HavenError(
    'operation_not_allowed',
    `machine '${name}' is paused (stopped after a shutdown timeout, or by hand); power it off before starting it again`,
    { machine: name, state: 'paused', allowed: ['powerOff', 'fence'] },
  );
}

/** A running or paused machine's definition cannot change, nor can it be undefined. */
export function mustBeOff(name: string, state: MachinePowerState, doing: 'change' | 'undefine'): HavenError {
  return new HavenError(
    'operation_not_allowed',
    doing === 'change'
      ? `machine '${name}' is ${state}; power it off before changing its definition`
      : `machine '${name}' is ${state}; power it off or fence it before undefining it`,
    { machine: name, state, allowed: ['shutdown', 'powerOff', 'fence'] },
  );
}

/** Refuses a changed definition for a machine that runs or is paused; `changed` is asked only then. */
export function refuseChangeWhileOn(name: string, state: MachinePowerState, changed: () => boolean): void {
  if ((state === 'running' || state === 'paused') && changed()) throw mustBeOff(name, state, 'change');
}

/**
 * Undefines a machine that is off through `remove`; refuses one that runs or
 * is paused. Idempotent: a retried step finds nothing left to remove.
 */
export async function undefineWhenOff(
  name: string,
  state: MachinePowerState,
  remove: () => Promise<void>,
): Promise<void> {
  if (state === 'running' || state === 'paused') throw mustBeOff(name, state, 'undefine');
  if (state === 'absent') return;
  await remove();
}
