import { agentReporting } from '../../domain/index.ts';
import { HavenError } from '../../errors/index.ts';
import { type ServerBmcCall, serverBmcOf } from '../servers/index.ts';
import { type LifecycleStepContext, pollUntil } from './lifecycle-job.ts';

/** How long a server's own power off may take to show at its BMC after its agent's last report. */
const AGENT_POWER_OFF_SECONDS = 60;

/**
 * A physical server is shut down by its agent (the command rides on the
 * answer to its next report): it stops writing, flushes, stops its arrays
 * and powers off; the host waits for its last report and its legs to close.
 * With a BMC, a server whose agent did not shut it down gets an ACPI power
 * button press (soft off: its OS shuts down, md flushes its legs), and
 * either way it counts as stopped only once the BMC reports it off.
 * A planned failover needs that to have happened; an unplanned one goes on.
 */
export async function shutDownServer(
  ctx: LifecycleStepContext,
  {
    required,
    timeoutSeconds,
    powerOffSeconds = AGENT_POWER_OFF_SECONDS,
  }: { required: boolean; timeoutSeconds: number; powerOffSeconds?: number },
): Promise<void> {
  const started = performance.now();
  const link = ctx.host(ctx.machine.activeHostId).servers;
  // A silent agent gets no command (it rides on the answer to a report): do not wait for one.
  const status = await link.status({ machineId: ctx.machine.id });
  const gone = !agentReporting(status)
    ? `its agent is silent (${status.problem ?? status.state})`
    : status.legs.length > 0 && status.legs.every((leg) => !leg.connected)
      ? 'none of its NBD legs is connected'
      : null;
  let result =
    gone !== null
      ? { stopped: false, reason: `${gone}: the server or its link is down` }
      : await link.shutdown({ machineId: ctx.machine.id, timeoutMs: timeoutSeconds * 1000 });
  const bmc = serverBmcOf(ctx.vault, ctx.machine, ctx.machine.activeHostId);
  if (bmc) result = await offByBmc(ctx, bmc, result, { timeoutSeconds, powerOffSeconds });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (!result.stopped && required) {
    throw new HavenError(
      'conflict',
      `physical server '${ctx.machine.name}' did not shut down ${bmc ? 'through its agent or its BMC' : 'through its agent'} within ${timeoutSeconds} s: ${result.reason}. ` +
        (bmc
          ? 'Shut it down on the server, then run the planned failover again, or run an unplanned failover (its BMC powers it off hard)'
          : 'Shut it down on the server, then run the planned failover again, or run an unplanned failover'),
      { machineId: ctx.machine.id, allowed: ['planned-failover', 'failover'] },
    );
  }
  await ctx.output({
    shutdown: result.stopped
      ? `shut down after ${seconds} s (${result.reason})`
      : `not shut down after ${seconds} s: ${result.reason}`,
  });
  ctx.progress(
    100,
    result.stopped ? 'the server shut down' : `the server did not shut down: ${result.reason}`,
  );
}

/** What the BMC says of a server the agent did (or did not) shut down: soft off if needed, then off read back. */
async function offByBmc(
  ctx: LifecycleStepContext,
  bmc: ServerBmcCall,
  byAgent: { stopped: boolean; reason: string },
  { timeoutSeconds, powerOffSeconds }: { timeoutSeconds: number; powerOffSeconds: number },
): Promise<{ stopped: boolean; reason: string }> {
  try {
    if (byAgent.stopped) {
      ctx.progress(60, 'the agent shut the server down; waiting for its BMC to report it off');
      return (await bmcReportsOff(ctx, bmc, powerOffSeconds * 1000))
        ? { stopped: true, reason: `${byAgent.reason}; its BMC reports it off` }
        : {
            stopped: false,
            reason: `${byAgent.reason}, but its BMC still reports it powered on ${powerOffSeconds} s later`,
          };
    }
    if ((await bmc('status')) === 'off')
      return { stopped: true, reason: `${byAgent.reason}; its BMC reports it off` };
    ctx.progress(50, `the agent did not shut the server down (${byAgent.reason}): soft off through its BMC`);
    await bmc('soft-off');
    return (await bmcReportsOff(ctx, bmc, timeoutSeconds * 1000))
      ? { stopped: true, reason: `${byAgent.reason}; soft off through its BMC, which reports it off` }
      : {
          stopped: false,
          reason: `${byAgent.reason}; its BMC still reports it powered on ${timeoutSeconds} s after a soft off (its OS ignored the ACPI power button)`,
        };
  } catch (error) {
    return {
      stopped: false,
      reason: `${byAgent.reason}; its BMC could not tell: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
}

/** Asks the BMC every second, up to `timeoutMs`, until it reports the server off; whether it did (a cancelled job stops asking). */
function bmcReportsOff(ctx: LifecycleStepContext, bmc: ServerBmcCall, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  return pollUntil(
    ctx,
    async () => ((await bmc('status')) === 'off' ? true : Date.now() >= deadline ? false : undefined),
    { intervalMs: 1000, what: 'the BMC to report the server off' },
  );
}
