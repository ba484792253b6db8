/** Regenerates the reference docs from the source (`npm run docs`). */
import { writeFile } from 'node:fs/promises';
import { GENERATED_DOCS } from '../src/docs/generate-docs.ts';

for (const [file, generate] of Object.entries(GENERATED_DOCS)) {
  await writeFile(new URL(`../${file}`, import.meta.url), generate());
  process.stdout.write(`wrote ${file}\n`);
}
