/**
 * Portal dashboard benchmark: how long after navigation the dashboard is
 * ready (the portal's `haven:dashboard-ready` mark: counts, hosts, RPO chart
 * and recent jobs drawn) in Debian's Chromium against a real `haven up` (vault
 * and two hosts in process), with 10, 100 and 1,000 machines (50 of them
 * protected, with points, from 100 on). Its peer is the same dashboard with
 * 10 machines in the same run: the ratio says what 1,000 machines cost. Goal:
 * ready in under 1 s with 1,000 machines.
 *
 * Each size: one first visit of the tab (the portal asks the vault who the
 * token is), then `--rounds` visits, median reported. Writes
 * bench/portal/results/latest.json. Not part of `npm test`.
 *
 *   node_modules/.bin/node bench/portal/run.ts [--rounds 7] [--sizes 10,100,1000]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { addManyMachines, dashboardReadyMs } from '../../src/testing/many-machines.ts';
import { buildPortal, startPortalFixture } from '../../src/testing/portal-fixture.ts';

const GOAL_MS = 1000;
const here = dirname(fileURLToPath(import.meta.url));

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '7' }, sizes: { type: 'string', default: '10,100,1000' } },
});
const rounds = Math.max(1, Number(values.rounds));
const sizes = (values.sizes ?? '')
  .split(',')
  .map(Number)
  .sort((a, b) => a - b);

function median(list: number[]): number {
  const sorted = [...list].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

await buildPortal();
const f = await startPortalFixture({ demo: false });
const results: Array<{ machines: number; firstVisitMs: number; medianMs: number; samplesMs: number[] }> = [];
try {
  for (const size of sizes) {
    await addManyMachines(f, size, size >= 100 ? 50 : 0);
    const page = await f.newPage({ token: f.adminToken });
    const firstVisitMs = await dashboardReadyMs(page, f.url);
    const samplesMs: number[] = [];
    for (let i = 0; i < rounds; i++) samplesMs.push(await dashboardReadyMs(page, f.url));
    await page.close();
    const medianMs = median(samplesMs);
    results.push({ machines: size, firstVisitMs, medianMs, samplesMs });
    console.log(
      `${String(size).padStart(5)} machines: ready ${Math.round(medianMs)} ms after navigation (median of ${rounds}; ` +
        `first visit of the tab ${Math.round(firstVisitMs)} ms)`,
    );
  }
} finally {
  await f.stop();
}
const base = results[0];
const largest = results.at(-1);
if (base && largest) {
  const ratio = largest.medianMs / base.medianMs;
  const met =
    largest.machines >= 1000 ? (largest.medianMs < GOAL_MS ? 'ok' : 'MISS') : 'not measured at 1,000';
  console.log(
    `\n${largest.machines} machines vs ${base.machines}: ${ratio.toFixed(2)}× the time; ` +
      `ready in ${Math.round(largest.medianMs)} ms (goal < ${GOAL_MS} ms with 1,000: ${met})`,
  );
}
const out = join(here, 'results', 'latest.json');
await mkdir(dirname(out), { recursive: true });
await writeFile(
  out,
  `${JSON.stringify({ date: new Date().toISOString(), rounds, goalMs: GOAL_MS, results }, null, 2)}\n`,
);
console.log(`written ${out}`);
