/**
 * What the QEMU and libvirt drivers share: one operation at a time per
 * machine, and the shutdown and power-off sequences, written once over the
 * steps each driver supplies.
 */
import { gracefulShutdown, type ShutdownRequest, type ShutdownSteps } from './graceful-shutdown.ts';
import type { MachinePowerState, MachineStatus, ShutdownResult } from './hypervisor.ts';
import { PerMachineQueue } from './per-machine-queue.ts';

export abstract class QueuedDriver {
  readonly #queue = new PerMachineQueue();

  async shutdown(params: ShutdownRequest): Promise<ShutdownResult> {
    return gracefulShutdown(
      params,
      (work) => this.exclusive(params.name, work),
      this.shutdownSteps(params.name),
    );
  }

  async powerOff(params: { name: string }): Promise<MachineStatus> {
    const { name } = params;
    return this.exclusive(name, async () => ({ name, state: await this.hardOff(name) }));
  }

  /** Runs operations on one machine one at a time; `status` never waits for them. */
  protected exclusive<T>(name: string, work: () => Promise<T>): Promise<T> {
    return this.#queue.run(name, work);
  }

  /** The driver's steps of a clean shutdown of `name`. */
  protected abstract shutdownSteps(name: string): ShutdownSteps;

  /** Powers a defined machine off hard (not found otherwise); returns its state. */
  protected abstract hardOff(name: string): Promise<MachinePowerState>;
}
