import type { ChildProcess } from 'node:child_process';
import { until } from './until.ts';

/** A process started in its own process group (`detached`), like a terminal's foreground job. */
export interface GroupProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

function groupAlive(group: number): boolean {
  try {
    process.kill(group, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Ctrl-C: SIGINT to the whole process group, then waits for its leader to
 * exit and for every other process of the group to go too (a wrapper such
 * as npm ends first; what it ran stops its machines, hosts and vault after).
 */
export async function interruptGroup(running: GroupProcess, timeoutMs = 60_000): Promise<void> {
  const group = -running.child.pid!;
  try {
    process.kill(group, 'SIGINT');
  } catch {}
  await running.exited;
  await until('the process group to stop after Ctrl-C', async () => !groupAlive(group), { timeoutMs });
}
