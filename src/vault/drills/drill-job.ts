import { defineJob, type StepDefinition } from '../../job-engine/index.ts';
import type { VaultJobDefinition } from '../jobs/job-inputs.ts';
import type { VaultContext } from '../vault-context.ts';
import type { DrillJobInput } from './drill-job-input.ts';
import {
  bootDrillMachine,
  checkDrillApplication,
  checkDrillFilesystems,
  cleanUpDrill,
  type DrillStepRun,
  drillMachineOf,
  drillPointsFor,
  drillStep,
  openDrillCopy,
  settleDrill,
} from './drill-machine.ts';

/**
 * A drill of one machine, run by the vault: a test failover nobody has to
 * attend (see drill-machine.ts for what each step does with the machine).
 */
export function drillJob(vault: () => VaultContext): VaultJobDefinition<'drill'> {
  return defineJob({
    kind: 'drill',
    steps: (input) => {
      const step = (
        name: string,
        title: string,
        run: DrillStepRun<DrillJobInput>,
      ): StepDefinition<DrillJobInput> => drillStep<DrillJobInput>(vault, { name, title }, run);
      return [
        step('choose-point', 'Choose the recovery point and hold it for the drill', async (_ctx, work) => {
          const machine = await drillMachineOf(work.vault, input.machineId);
          const points = await drillPointsFor(work.vault, [machine], input.point);
          await openDrillCopy(work, machine, points.get(machine.id)!);
        }),
        ...(input.checks.filesystems
          ? [
              step(
                'check-filesystems',
                'Check every filesystem of the point on the recovery host, without booting it',
                async (_ctx, work) =>
                  checkDrillFilesystems(work, await drillMachineOf(work.vault, input.machineId)),
              ),
            ]
          : []),
        step(
          'boot',
          'Boot the point on the isolated test network and wait for it to come up',
          async (_ctx, work) => {
            await bootDrillMachine(work, await drillMachineOf(work.vault, input.machineId));
          },
        ),
        ...(input.checks.script === null
          ? []
          : [
              step(
                'check-application',
                `Run script '${input.checks.script.name}' against the drill machine in the test network`,
                async (_ctx, work) =>
                  checkDrillApplication(work, await drillMachineOf(work.vault, input.machineId)),
              ),
            ]),
        step('clean-up', 'Remove the drill machine and its overlay', async (ctx, work) => {
          await cleanUpDrill(work.vault, work.run);
          ctx.progress(100, 'drill machine and overlay removed');
        }),
      ];
    },
    // A machine drill's RTO is its machine's: the run says it too (history, reports, `drills show`).
    settle: ({ input, outcome, error }) =>
      settleDrill(vault(), input, { outcome, error }, (run) => ({
        checks: run.checks,
        rtoSeconds: run.machines[0]?.rtoSeconds ?? null,
      })),
  });
}
