/**
 * The clean-shutdown sequence every hypervisor driver follows (ACPI
 * powerdown, wait, then what `onTimeout` asks): one home, so the QEMU and
 * libvirt drivers time and report it alike. Each driver supplies the steps.
 */
import { shutdownTimedOut, shutdownTimeoutAction } from './driver-refusals.ts';
import type { MachinePowerState, ShutdownResult } from './hypervisor.ts';

export interface ShutdownRequest {
  name: string;
  timeoutSeconds: number;
  onTimeout?: 'fail' | 'stop' | 'power-off';
}

export interface ShutdownSteps {
  /** Throws when the machine is not defined; true when it is off already (tidied up). */
  alreadyOff(): Promise<boolean>;
  /** Asks the guest to power down and waits up to `ms`; true when it is off (tidied up). */
  powerDown(ms: number): Promise<boolean>;
  /** Pauses the guest (it cannot write any more); returns its state. */
  pause(): Promise<MachinePowerState>;
  /** Powers the machine off hard; returns its state. */
  powerOff(): Promise<MachinePowerState>;
  state(): Promise<MachinePowerState>;
}

/** Checks the request, then runs the sequence inside `exclusive` (the driver's per-machine queue). */
export function gracefulShutdown(
  request: ShutdownRequest,
  exclusive: (work: () => Promise<ShutdownResult>) => Promise<ShutdownResult>,
  steps: ShutdownSteps,
): Promise<ShutdownResult> {
  const { name, timeoutSeconds } = request;
  const onTimeout = shutdownTimeoutAction(name, timeoutSeconds, request.onTimeout);
  return exclusive(async () => {
    const began = Date.now();
    const seconds = () => Math.round(Date.now() - began) / 1000;
    if (await steps.alreadyOff()) {
      return { name, state: 'shut-off', outcome: 'already-off', seconds: seconds() };
    }
    if (await steps.powerDown(timeoutSeconds * 1000)) {
      return { name, state: 'shut-off', outcome: 'powered-down', seconds: seconds() };
    }
    if (onTimeout === 'stop') {
      return { name, state: await steps.pause(), outcome: 'stopped', seconds: seconds() };
    }
    if (onTimeout === 'power-off') {
      return { name, state: await steps.powerOff(), outcome: 'powered-off', seconds: seconds() };
    }
    throw shutdownTimedOut(name, timeoutSeconds, await steps.state());
  });
}
