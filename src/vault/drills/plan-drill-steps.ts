import type { DrillCheck, DrillRun } from '../../domain/drill.ts';
import type { JobStep, RecoveryPlanAction } from '../../domain/model.ts';
import { actionStepName } from '../plans/plan-steps.ts';
import type { PlanDrillJobInput } from './plan-drill-job-input.ts';

export const PLAN_DRILL_JOB_KIND = 'plan-drill';

/** What a group's machines go through together, in this order. */
export type PlanDrillPhase = 'check-filesystems' | 'boot' | 'check-application';

export type PlanDrillStep =
  | { kind: 'choose-points'; name: string; title: string }
  | {
      kind: 'action';
      name: string;
      title: string;
      group: number;
      side: 'before' | 'after';
      action: RecoveryPlanAction;
    }
  | { kind: 'machines'; name: string; title: string; group: number; phase: PlanDrillPhase }
  | { kind: 'clean-up'; name: string; title: string };

/**
 * A plan drill's steps: every point chosen and held first (so a consistency
 * group's machines boot one cut, whichever group of the plan they are in),
 * then per group its before actions, its machines' checks together, its
 * after actions — the plan's order — and the clean-up. Deterministic from the input.
 */
export function planDrillSteps(input: PlanDrillJobInput): PlanDrillStep[] {
  const phases: PlanDrillPhase[] = [
    ...(input.checks.filesystems ? (['check-filesystems'] as const) : []),
    'boot',
    ...(input.checks.script === null ? [] : (['check-application'] as const)),
  ];
  const phaseTitle: Record<PlanDrillPhase, string> = {
    'check-filesystems': 'check the filesystems of its machines on the recovery host, without booting',
    boot: 'boot its machines on the isolated test network and wait for them to come up',
    'check-application': `run script '${input.checks.script?.name}' against its machines in the test network`,
  };
  return [
    {
      kind: 'choose-points',
      name: 'choose-points',
      title: "Choose every machine's recovery point and hold it for the drill",
    },
    ...input.groups.flatMap((group, g): PlanDrillStep[] => {
      const label = `Group ${g + 1} '${group.name}'`;
      const actions = (side: 'before' | 'after'): PlanDrillStep[] =>
        group[side].map((action, a) => ({
          kind: 'action',
          name: actionStepName(g, side, a),
          title: `${label}, ${side}: ${action.kind} '${action.name}'${action.kind === 'manual' ? ' (not performed: nobody attends a drill)' : ''}`,
          group: g,
          side,
          action,
        }));
      return [
        ...actions('before'),
        ...phases.map(
          (phase): PlanDrillStep => ({
            kind: 'machines',
            name: `g${g + 1}.${phase}`,
            title: `${label}: ${phaseTitle[phase]}`,
            group: g,
            phase,
          }),
        ),
        ...actions('after'),
      ];
    }),
    { kind: 'clean-up', name: 'clean-up', title: 'Remove every drill machine and its overlay' },
  ];
}

/** The check a manual action gets in a drill: not performed, with what the operator would have done. */
export function manualActionCheck(
  group: string,
  side: 'before' | 'after',
  action: Extract<RecoveryPlanAction, { kind: 'manual' }>,
  at: string,
): DrillCheck {
  return {
    kind: 'plan',
    name: `manual action '${action.name}' (group '${group}', ${side})`,
    result: 'not-checked',
    summary: 'not performed: a drill runs unattended, so nobody carries out a manual action',
    evidence: action.text,
    evidenceIsScriptOutput: false,
    startedAt: at,
    durationMs: 0,
  };
}

const secondsBetween = (from: string, to: string) => (Date.parse(to) - Date.parse(from)) / 1000;

/**
 * Whether the plan's order ran through: every group's actions and machines
 * in turn, with per-group timings (from the drill's start) as evidence. A
 * step that did not succeed fails it, named with its error.
 */
export function planOrderCheck(
  input: PlanDrillJobInput,
  jobSteps: readonly JobStep[],
  run: DrillRun,
  now: string,
): DrillCheck {
  const start = run.startedAt ?? run.createdAt;
  const byName = new Map(jobSteps.map((s) => [s.name, s]));
  const order = planDrillSteps(input).filter((s) => s.kind === 'action' || s.kind === 'machines');
  const at = (iso: string | null) => (iso === null ? '—' : `${secondsBetween(start, iso).toFixed(1)} s`);
  const lines: string[] = [];
  input.groups.forEach((group, g) => {
    const steps = order.filter((s) => 'group' in s && s.group === g);
    const first = byName.get(steps[0]?.name ?? '');
    const last = byName.get(steps.at(-1)?.name ?? '');
    lines.push(
      `Group ${g + 1} '${group.name}': from ${at(first?.startedAt ?? null)} to ${at(last?.finishedAt ?? null)} after the drill's start`,
    );
    for (const s of steps) {
      const done = byName.get(s.name);
      const took =
        done?.startedAt && done.finishedAt
          ? ` in ${secondsBetween(done.startedAt, done.finishedAt).toFixed(1)} s`
          : '';
      lines.push(`  ${s.title}: ${done?.state ?? 'not run'}${took}`);
      if (s.kind === 'machines' && s.phase === 'boot') {
        for (const id of group.machineIds) {
          const m = run.machines.find((x) => x.machineId === id);
          lines.push(
            `    ${m?.machineName ?? id}: ${m?.rtoSeconds == null ? 'not up' : `up at ${m.rtoSeconds.toFixed(1)} s`}`,
          );
        }
      }
    }
  });
  const broken = order.find((s) => byName.get(s.name)?.state !== 'succeeded');
  const brokenStep = broken && byName.get(broken.name);
  const manual = order.filter((s) => s.kind === 'action' && s.action.kind === 'manual').length;
  const machines = input.groups.reduce((n, g) => n + g.machineIds.length, 0);
  const lastUp = Math.max(0, ...run.machines.map((m) => m.rtoSeconds ?? 0));
  return {
    kind: 'plan',
    name: 'plan order and actions',
    result: broken ? 'failed' : 'passed',
    summary: broken
      ? brokenStep?.error
        ? `stopped at ${broken.title}: ${brokenStep.error.message}`
        : `not reached: ${broken.title} (the drill ended before it)`
      : `${input.groups.length} group(s) in order, ${machines} machine(s) up after ${lastUp.toFixed(1)} s` +
        (manual > 0 ? `; ${manual} manual action(s) not performed` : ''),
    evidence: lines.join('\n'),
    evidenceIsScriptOutput: false,
    startedAt: start,
    durationMs: Date.parse(now) - Date.parse(start),
  };
}
