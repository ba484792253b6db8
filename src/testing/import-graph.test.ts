import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  cycles,
  folderDependencies,
  folderOf,
  type ImportGraph,
  importSpecifiers,
  isTestModule,
  readImportGraph,
} from './import-graph.ts';

const SRC = fileURLToPath(new URL('..', import.meta.url));

describe('import graph reader', () => {
  it('finds static, re-export, type-only and dynamic relative imports, not packages', () => {
    const text = [
      "import { a } from './a.ts';",
      "import type { B } from '../b/index.ts';",
      "export { c } from './c.ts';",
      "export * from './d.ts';",
      "import {\n  e,\n  f,\n} from './ef.ts';",
      "const g = await import('./g.ts');",
      "import { join } from 'node:path';",
      "import { z } from 'zod';",
    ].join('\n');
    assert.deepEqual(importSpecifiers(text), [
      './a.ts',
      '../b/index.ts',
      './c.ts',
      './d.ts',
      './ef.ts',
      './g.ts',
    ]);
  });

  it('finds every cycle and nothing else', () => {
    const edges = new Map<string, string[]>([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a', 'd']],
      ['d', ['e']],
      ['e', []],
      ['f', ['f']],
      ['g', ['h']],
      ['h', ['g']],
    ]);
    assert.deepEqual(cycles(edges), [['a', 'b', 'c'], ['f'], ['g', 'h']]);
    assert.deepEqual(
      cycles(
        new Map([
          ['x', ['y']],
          ['y', ['z']],
        ]),
      ),
      [],
    );
  });

  it('groups modules by top-level folder and tells test code apart', () => {
    const graph: ImportGraph = {
      root: '/',
      imports: new Map([
        ['vault/a.ts', ['api/b.ts', 'vault/c.ts']],
        ['api/b.ts', ['domain/m.ts']],
        ['api/b.test.ts', ['vault/a.ts', 'testing/t.ts']],
      ]),
    };
    const deps = folderDependencies(graph, (m) => !isTestModule(m));
    assert.deepEqual([...(deps.get('vault') ?? [])], ['api']);
    assert.deepEqual([...(deps.get('api') ?? [])], ['domain']);
    assert.equal(folderOf('main.ts'), '.');
    assert.equal(isTestModule('testing/until.ts'), true);
    assert.equal(isTestModule('disk/x.fixture.ts'), true);
    assert.equal(isTestModule('disk/x.ts'), false);
  });
});

describe('the layering of src/', () => {
  const graph = readImportGraph(SRC);

  it('has no import cycle between modules', () => {
    assert.deepEqual(cycles(graph.imports), []);
  });

  it('has no cycle between the folders of the product (tests aside)', () => {
    assert.deepEqual(cycles(folderDependencies(graph, (m) => !isTestModule(m))), []);
  });

  it('keeps the domain pure: it imports nothing but itself and errors', () => {
    const outside = [...graph.imports]
      .filter(([from]) => folderOf(from) === 'domain' && !isTestModule(from))
      .flatMap(([from, targets]) =>
        targets.filter((t) => !['domain', 'errors'].includes(folderOf(t))).map((t) => `${from} -> ${t}`),
      );
    assert.deepEqual(outside, []);
  });

  it('never imports test code from product code', () => {
    const leaks = [...graph.imports]
      .filter(([from]) => !isTestModule(from))
      .flatMap(([from, targets]) => targets.filter(isTestModule).map((t) => `${from} -> ${t}`));
    assert.deepEqual(leaks, []);
  });
});
