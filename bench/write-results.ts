import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Writes a benchmark's results, dated, to `<benchDir>/results/latest.json` (git-ignored) and says where. */
export async function writeResults(benchDir: string, results: object): Promise<void> {
  const out = join(benchDir, 'results', 'latest.json');
  await mkdir(join(benchDir, 'results'), { recursive: true });
  await writeFile(out, `${JSON.stringify({ date: new Date().toISOString(), ...results }, null, 2)}\n`);
  console.log(`written ${out}`);
}
