import { isoNow } from '../../clock/index.ts';
import type { Machine } from '../../domain/model.ts';
import { HavenError } from '../../errors/index.ts';
import { defineJob, type StepContext } from '../../job-engine/index.ts';
import type { VaultJobDefinition } from '../jobs/job-inputs.ts';
import { runScriptAction } from '../plans/plan-job.ts';
import type { VaultContext } from '../vault-context.ts';
import {
  addDrillCheck,
  bootDrillMachine,
  checkDrillApplication,
  checkDrillFilesystems,
  cleanUpDrill,
  type DrillWork,
  drillMachineOf,
  drillPointsFor,
  drillStep,
  openDrillCopy,
  settleDrill,
} from './drill-machine.ts';
import type { PlanDrillJobInput } from './plan-drill-job-input.ts';
import {
  manualActionCheck,
  PLAN_DRILL_JOB_KIND,
  type PlanDrillStep,
  planDrillSteps,
  planOrderCheck,
} from './plan-drill-steps.ts';

/**
 * A drill of a recovery plan: the plan's test failover run by the vault,
 * unattended. Its groups run in order — before actions, the group's machines
 * together (each checked as a machine drill checks it), after actions —
 * every machine on the isolated test network. Script actions run as in a
 * plan's test failover (HAVEN_OPERATION=drill); a manual action is recorded
 * as not performed, with its instructions. The run's RTO is the plan's: from
 * the drill's start until the last group's last machine was up, the actions
 * on the way included. Every machine is cleaned up, as a machine drill is.
 */
export function planDrillJob(vault: () => VaultContext): VaultJobDefinition<typeof PLAN_DRILL_JOB_KIND> {
  return defineJob({
    kind: PLAN_DRILL_JOB_KIND,
    steps: (input) =>
      planDrillSteps(input).map((step) =>
        drillStep<PlanDrillJobInput>(
          vault,
          { name: step.name, title: step.title, weight: step.kind === 'machines' ? 4 : 1 },
          (ctx, work) => runStep(ctx, work, input, step),
        ),
      ),
    settle: async ({ job, input, outcome, error }) => {
      const v = vault();
      await settleDrill(v, input, { outcome, error }, (run) => {
        const order = planOrderCheck(input, job.steps, run, isoNow(v.clock));
        const everyMachineUp = run.machines.every((m) => m.rtoSeconds !== null);
        return {
          checks: [...run.checks.filter((c) => c.name !== order.name), order],
          rtoSeconds:
            order.result === 'passed' && everyMachineUp
              ? Math.max(...run.machines.map((m) => m.rtoSeconds!))
              : null,
        };
      });
    },
  });
}

async function machinesOf(work: DrillWork, ids: readonly string[]): Promise<Machine[]> {
  return Promise.all(ids.map((id) => drillMachineOf(work.vault, id)));
}

async function runStep(
  ctx: StepContext<PlanDrillJobInput>,
  work: DrillWork,
  input: PlanDrillJobInput,
  step: PlanDrillStep,
): Promise<void> {
  switch (step.kind) {
    case 'choose-points': {
      const machines = await machinesOf(
        work,
        input.groups.flatMap((g) => g.machineIds),
      );
      const points = await drillPointsFor(work.vault, machines, input.point);
      // Every point held from the start: retention does not merge past one a later group boots.
      for (const machine of machines) await openDrillCopy(work, machine, points.get(machine.id)!);
      ctx.progress(100, `${machines.length} point(s) chosen and held`);
      return;
    }
    case 'action': {
      const group = input.groups[step.group]!;
      const { action } = step;
      if (action.kind === 'manual') {
        await addDrillCheck(
          work.vault,
          work.run.id,
          null,
          manualActionCheck(group.name, step.side, action, isoNow(work.vault.clock)),
        );
        ctx.progress(100, `manual action '${action.name}' not performed: nobody attends a drill`);
        return;
      }
      await runScriptAction(work.vault, ctx, {
        planId: input.planId,
        planName: input.planName,
        group,
        machineNames: input.machineNames,
        stepName: step.name,
        action,
        operation: 'drill',
        direction: 'primary-to-recovery',
      });
      return;
    }
    case 'machines': {
      const group = input.groups[step.group]!;
      const machines = await machinesOf(work, group.machineIds);
      if (step.phase === 'check-filesystems') {
        await Promise.all(machines.map((m) => checkDrillFilesystems(work, m)));
      } else if (step.phase === 'check-application') {
        await Promise.all(machines.map((m) => checkDrillApplication(work, m)));
      } else {
        const up = await Promise.all(machines.map((m) => bootDrillMachine(work, m)));
        const down = machines.filter((_, i) => !up[i]).map((m) => `'${m.name}'`);
        if (down.length > 0) {
          throw new HavenError(
            'conflict',
            `machine(s) ${down.join(', ')} of group '${group.name}' did not come up; the groups after it were not started`,
            { drillId: work.run.id, group: group.name },
          );
        }
      }
      return;
    }
    case 'clean-up': {
      await cleanUpDrill(work.vault, work.run);
      ctx.progress(100, 'every drill machine and overlay removed');
      return;
    }
  }
}
