import type { RecoveryPlanAction, RecoveryPlanGroup } from '../../domain/model.ts';
import type { OperationWithOptions } from '../lifecycle/operation-options.ts';

/** The operations a plan runs over its machines, in the API's words. */
export const PLAN_OPERATIONS = [
  'test-failover',
  'cleanup-test-failover',
  'failover',
  'planned-failover',
  'commit',
  'reprotect',
  'failback',
  'complete-failover',
] as const;
export type PlanOperation = (typeof PLAN_OPERATIONS)[number];

/**
 * Operations that start machines somewhere: a plan's actions run around
 * these (a script that repoints DNS or a manual "check the app" belongs to
 * bringing machines up, not to committing or cleaning up). Scripts see the
 * operation in HAVEN_OPERATION.
 */
export const ACTION_OPERATIONS: ReadonlySet<PlanOperation> = new Set([
  'test-failover',
  'failover',
  'planned-failover',
  'failback',
  'complete-failover',
]);

/**
 * Whether this run of the operation brings machines up, and so runs the
 * plan's actions: a failback that synchronises before failover only copies
 * data (the machines start at its complete-failover), so its actions wait
 * for that.
 */
export function runsActions(request: OperationWithOptions<PlanOperation>): boolean {
  if (request.operation === 'failback' && request.options.dataSync === 'before-failover') return false;
  return ACTION_OPERATIONS.has(request.operation);
}

export type Direction = 'primary-to-recovery' | 'recovery-to-primary';

export function directionOf(operation: PlanOperation): Direction {
  return operation === 'failback' || operation === 'complete-failover'
    ? 'recovery-to-primary'
    : 'primary-to-recovery';
}

/** What a plan job is created with: a snapshot of the plan, so editing the plan does not change a running job. */
export type PlanJobInput = {
  planId: string;
  planName: string;
  groups: RecoveryPlanGroup[];
  machineNames: Record<string, string>;
  /** The operation and its options, the same for every machine (e.g. one recovery point choice). */
} & OperationWithOptions<PlanOperation>;

/** The operation a plan job runs on each machine, with its options. */
export function planOperation(input: PlanJobInput): OperationWithOptions<PlanOperation> {
  const { planId, planName, groups, machineNames, ...requested } = input;
  return requested;
}

export type PlanStep =
  | {
      kind: 'action';
      name: string;
      title: string;
      group: number;
      side: 'before' | 'after';
      action: RecoveryPlanAction;
    }
  | { kind: 'machine'; name: string; title: string; group: number; machineId: string };

/** Step name of an action; stable, so the RTO estimate finds earlier runs' durations. */
export function actionStepName(group: number, side: 'before' | 'after', index: number): string {
  return `g${group + 1}.${side}.${index + 1}`;
}

/**
 * The plan job's steps: per group, its before actions, one step per machine,
 * its after actions — in the order written. Deterministic from the input.
 */
export function planSteps(input: PlanJobInput): PlanStep[] {
  const withActions = runsActions(input);
  return input.groups.flatMap((group, g) => {
    const label = `Group ${g + 1} '${group.name}'`;
    const actions = (side: 'before' | 'after'): PlanStep[] =>
      withActions
        ? group[side].map((action, a) => ({
            kind: 'action',
            name: actionStepName(g, side, a),
            title: `${label}, ${side}: ${action.kind} '${action.name}'`,
            group: g,
            side,
            action,
          }))
        : [];
    return [
      ...actions('before'),
      ...group.machineIds.map(
        (machineId): PlanStep => ({
          kind: 'machine',
          name: `g${g + 1}.machine.${machineId}`,
          title: `${label}: ${input.operation} of machine '${input.machineNames[machineId] ?? machineId}'`,
          group: g,
          machineId,
        }),
      ),
      ...actions('after'),
    ];
  });
}
