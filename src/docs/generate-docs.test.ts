import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { GENERATED_DOCS } from './generate-docs.ts';

describe('reference docs', () => {
  for (const [file, generate] of Object.entries(GENERATED_DOCS)) {
    it(`${file} matches the source (run npm run docs)`, async () => {
      const committed = await readFile(new URL(`../../${file}`, import.meta.url), 'utf8');
      assert.equal(committed, generate());
    });
  }
});
