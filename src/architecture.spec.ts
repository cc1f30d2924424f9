import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * The layout's two rules, read from the source's own imports (specs left
 * out): no import cycles, and the stock SQLite index's internals
 * (src/index/sqlite) reached from outside only by the index module that
 * picks it, the public API and the CLI (which watches the index file).
 * Everything else goes through the tokens (KEY_INDEX, JOB_STORE,
 * REBUILD_STAGING), so that a team's index is a whole replacement.
 */
const SRC = resolve(__dirname);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.spec.ts') ? [path] : [];
  });
}

/** Each file's relative imports (static, dynamic and type-only), as files under src. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    const targets = [...text.matchAll(/(?:from\s+|import\()'(\.{1,2}\/[^']+)'/g)].map(([, spec]) => {
      const base = resolve(dirname(file), spec);
      return [`${base}.ts`, join(base, 'index.ts')].find((candidate) => existsSync(candidate)) ?? `${base} (missing)`;
    });
    graph.set(relative(SRC, file), targets.map((target) => relative(SRC, target)));
  }
  return graph;
}

/** The import cycles, each as the files on it (Tarjan's strongly connected components). */
function cycles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (file: string) => {
    index.set(file, counter);
    low.set(file, counter++);
    stack.push(file);
    onStack.add(file);
    for (const next of graph.get(file) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(file, Math.min(low.get(file)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(file, Math.min(low.get(file)!, index.get(next)!));
      }
    }
    if (low.get(file) === index.get(file)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== file);
      if (component.length > 1 || graph.get(file)?.includes(file)) found.push(component.sort());
    }
  };
  for (const file of graph.keys()) if (!index.has(file)) visit(file);
  return found;
}

describe('the source layout', () => {
  const graph = importGraph();

  it('reads every import of every file (a sanity check of the reader itself)', () => {
    expect(graph.get('mkv.module.ts')).toEqual(expect.arrayContaining(['core.module.ts', 'keys/keys.controller.ts']));
    expect([...graph.values()].flat().filter((target) => target.endsWith('(missing)'))).toEqual([]);
  });

  it('has no import cycle', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('finds a cycle where there is one (the check can fail)', () => {
    expect(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]))).toEqual([['a', 'b', 'c']]);
  });

  it('reaches the SQLite index internals from outside only through IndexModule, the public API and the CLI', () => {
    const outsiders = [...graph]
      .filter(([file, targets]) => !file.startsWith('index/sqlite/') && targets.some((target) => target.startsWith('index/sqlite/')))
      .map(([file]) => file);
    expect(outsiders.sort()).toEqual(['index.ts', 'index/index.module.ts', 'main.ts']);
  });
});
