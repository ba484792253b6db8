import { allowedOperations, type MachineRef } from '../../domain/index.ts';
import type { MachineState } from '../../domain/model.ts';
import { PLAN_OPERATIONS, type PlanOperation } from './plan-steps.ts';

/** A member machine whose state refuses an operation. */
export interface PlanOperationBlocker {
  machineId: string;
  machineName: string;
  state: MachineState;
}

/** Whether a plan operation can start now as its machines' states see it, and which machines refuse it. */
export interface PlanOperationAvailability {
  operation: PlanOperation;
  allowed: boolean;
  blockedBy: PlanOperationBlocker[];
}

/**
 * Each plan operation against the members' states, in PLAN_OPERATIONS order.
 * Only the states: starting the operation also checks other plans' jobs and
 * the operation's own preconditions, and refuses with those.
 */
export function planOperationAvailability(machines: readonly MachineRef[]): PlanOperationAvailability[] {
  const allowed = new Map(machines.map((m) => [m.id, new Set(allowedOperations(m.state))]));
  return PLAN_OPERATIONS.map((operation) => {
    const blockedBy = machines
      .filter((m) => !allowed.get(m.id)!.has(operation))
      .map((m) => ({ machineId: m.id, machineName: m.name, state: m.state }));
    return { operation, allowed: machines.length > 0 && blockedBy.length === 0, blockedBy };
  });
}
