import type { ApiClient } from '../client/api-client.ts';
import { isTerminalJobState } from '../domain/job-states.ts';
import type { Job } from '../domain/model.ts';

function bar(percent: number, width = 24): string {
  const filled = Math.round((percent / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(percent).padStart(3)}%`;
}

/**
 * Follows a job until it ends. On a terminal it redraws a progress bar per
 * step; otherwise it prints one plain line per change (logs, CI).
 */
export async function watchJob(
  client: ApiClient,
  jobId: string,
  options: { tty: boolean; write: (text: string) => void; intervalMs?: number },
): Promise<Job> {
  let lastLines: string[] = [];
  let drawn = 0;
  for (;;) {
    const job = await client.get<Job>(`/jobs/${jobId}`);
    const lines = [
      `${job.kind} ${job.id.slice(0, 8)}  ${job.state}  ${bar(job.progress)}`,
      ...job.steps.map(
        (s) =>
          `  ${s.title.padEnd(44).slice(0, 44)} ${s.state.padEnd(9)} ${bar(s.progress, 16)}${s.message ? `  ${s.message}` : ''}`,
      ),
    ];
    if (options.tty) {
      if (drawn > 0) options.write(`\x1b[${drawn}A`);
      options.write(lines.map((l) => `\x1b[2K${l}\n`).join(''));
      drawn = lines.length;
    } else {
      for (const [i, line] of lines.entries()) if (lastLines[i] !== line) options.write(`${line.trim()}\n`);
    }
    lastLines = lines;
    if (isTerminalJobState(job.state)) {
      if (job.error) options.write(`error: ${job.error.message}\n`);
      return job;
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 500));
  }
}
