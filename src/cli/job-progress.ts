import type { ApiClient } from '../client/api-client.ts';
import { isTerminalJobState } from '../domain/job-states.ts';
import type { Job } from '../domain/model.ts';
import { shortId } from './resolve-ref.ts';

function bar(percent: number, width = 24): string {
  const filled = Math.round((percent / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(percent).padStart(3)}%`;
}

/** The line cut to the terminal's width: a wrapped line would break the redraw (it moves up one row per line). */
export function fitLine(line: string, columns: number | undefined): string {
  if (columns === undefined || line.length < columns) return line;
  return `${line.slice(0, Math.max(0, columns - 2))}…`;
}

/**
 * Follows a job until it ends. On a terminal it redraws a progress bar per
 * step; otherwise it prints one plain line per change (logs, CI).
 */
export async function watchJob(
  client: ApiClient,
  jobId: string,
  options: {
    tty: boolean;
    write: (text: string) => void;
    intervalMs?: number;
    /** The terminal's width: redrawn lines are cut to it. */
    columns?: number;
  },
): Promise<Job> {
  let lastLines: string[] = [];
  let drawn = 0;
  for (;;) {
    const job = await client.get<Job>(`/jobs/${jobId}`);
    const lines = [
      `${job.kind} ${shortId(job.id)}  ${job.state}  ${bar(job.progress)}`,
      ...job.steps.map(
        (s) =>
          `  ${s.title.padEnd(44).slice(0, 44)} ${s.state.padEnd(9)} ${bar(s.progress, 16)}${s.message ? `  ${s.message}` : ''}`,
      ),
    ];
    if (options.tty) {
      if (drawn > 0) options.write(`\x1b[${drawn}A`);
      options.write(lines.map((l) => `\x1b[2K${fitLine(l, options.columns)}\n`).join(''));
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
