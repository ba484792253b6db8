/**
 * The project's import graph, read from the source text: which module imports
 * which, and which top-level folder depends on which. The architecture test
 * checks it, so a layering mistake fails `npm test` instead of waiting for a
 * reviewer to notice.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

export interface ImportGraph {
  /** Folder the graph was read from; module names are relative to it. */
  root: string;
  /** Module → the modules it imports (relative imports only, type-only ones included). */
  imports: Map<string, string[]>;
}

const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+'(\.{1,2}\/[^']+)'|import\(\s*'(\.{1,2}\/[^']+)'\s*\)/g;

/** The relative module specifiers of one source text, in order. */
export function importSpecifiers(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(IMPORT)) found.push((m[1] ?? m[2]) as string);
  return found;
}

export function readImportGraph(root: string): ImportGraph {
  const base = resolve(root);
  const imports = new Map<string, string[]>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (/\.tsx?$/.test(entry.name)) {
        const from = relative(base, path).split(sep).join('/');
        const targets = importSpecifiers(readFileSync(path, 'utf8')).map((spec) =>
          relative(base, resolve(dirname(path), spec))
            .split(sep)
            .join('/'),
        );
        imports.set(from, targets);
      }
    }
  };
  walk(base);
  return { root: base, imports };
}

/** Test code: tests, fixtures and everything under testing/. */
export function isTestModule(module: string): boolean {
  return /\.(test|fixture)\.tsx?$/.test(module) || module.startsWith('testing/');
}

/** The top-level folder of a module ('.' for a file at the root). */
export function folderOf(module: string): string {
  const slash = module.indexOf('/');
  return slash < 0 ? '.' : module.slice(0, slash);
}

/** Folder → folders it imports from, counting only the modules `include` accepts. */
export function folderDependencies(
  graph: ImportGraph,
  include: (module: string) => boolean = () => true,
): Map<string, Set<string>> {
  const deps = new Map<string, Set<string>>();
  for (const [from, targets] of graph.imports) {
    if (!include(from)) continue;
    const a = folderOf(from);
    for (const to of targets) {
      const b = folderOf(to);
      if (a === b) continue;
      const set = deps.get(a) ?? new Set<string>();
      set.add(b);
      deps.set(a, set);
    }
  }
  return deps;
}

/**
 * Every cycle of a directed graph, one per strongly connected component of
 * more than one node (or a node importing itself), as the component's nodes
 * in sorted order. Tarjan's algorithm, iterative so deep graphs cannot
 * overflow the stack.
 */
export function cycles(edges: Map<string, Iterable<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const found: string[][] = [];
  let next = 0;
  const successors = (node: string): string[] => [...(edges.get(node) ?? [])];
  for (const start of edges.keys()) {
    if (index.has(start)) continue;
    const work: Array<{ node: string; next: string[] }> = [];
    const visit = (node: string): void => {
      index.set(node, next);
      low.set(node, next);
      next++;
      stack.push(node);
      onStack.add(node);
      work.push({ node, next: successors(node) });
    };
    visit(start);
    while (work.length > 0) {
      const frame = work[work.length - 1] as { node: string; next: string[] };
      const child = frame.next.shift();
      if (child !== undefined) {
        if (!index.has(child)) visit(child);
        else if (onStack.has(child))
          low.set(frame.node, Math.min(low.get(frame.node) as number, index.get(child) as number));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent)
        low.set(parent.node, Math.min(low.get(parent.node) as number, low.get(frame.node) as number));
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        let member: string | undefined;
        do {
          member = stack.pop() as string;
          onStack.delete(member);
          component.push(member);
        } while (member !== frame.node);
        const selfLoop = [...(edges.get(frame.node) ?? [])].includes(frame.node);
        if (component.length > 1 || selfLoop) found.push(component.sort());
      }
    }
  }
  return found;
}
