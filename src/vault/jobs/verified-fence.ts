import type { Hypervisor, MachinePowerState } from '../../host/host-services.ts';

/**
 * What fencing a machine established, checked rather than taken on the
 * driver's word: `fenced` only when the hypervisor, asked again after the
 * fence, reports the machine off or gone.
 */
export type FenceOutcome =
  | { fenced: true; state: Extract<MachinePowerState, 'shut-off' | 'absent'> }
  /** The hypervisor reports the machine still there after the fence: it may still write. */
  | { fenced: false; state: Exclude<MachinePowerState, 'shut-off' | 'absent'>; reason: string }
  /** The fence or the check failed: nobody knows whether it runs. */
  | { fenced: false; state: 'unknown'; reason: string };

export async function fenceAndVerify(
  hypervisor: Pick<Hypervisor, 'fence' | 'status'>,
  name: string,
): Promise<FenceOutcome> {
  try {
    await hypervisor.fence({ name });
  } catch (error) {
    return { fenced: false, state: 'unknown', reason: `fencing failed: ${messageOf(error)}` };
  }
  let state: MachinePowerState;
  try {
    state = (await hypervisor.status({ name })).state;
  } catch (error) {
    return {
      fenced: false,
      state: 'unknown',
      reason: `its state after fencing is unknown: ${messageOf(error)}`,
    };
  }
  if (state === 'shut-off' || state === 'absent') return { fenced: true, state };
  return {
    fenced: false,
    state,
    reason: `the hypervisor still reports it ${state} after fencing`,
  };
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
