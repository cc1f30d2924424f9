import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { testRunPrefix } from './volumes';

const ROOT = resolve(__dirname, '../..');
/** Where this checkout's tests compile the examples; a run's folders are named after it (see global-teardown.ts). */
export const BUILT_EXAMPLES = resolve(ROOT, 'examples/dist');
let outDir: string | undefined;

/**
 * Compiles examples/ against the package's built declarations (dist/, as a
 * team's project sees them) and returns the path of one example's compiled
 * module file, for `mkv serve --module`. Once per test process, into a folder
 * of its own under examples/dist, inside the package so that the examples'
 * `require('mkv')` finds this checkout's dist/ (Node's self-reference); the
 * run's teardown removes it.
 * Run `npm run build` first (npm test does).
 */
export function builtExample(file: string): string {
  if (outDir === undefined) {
    const dir = resolve(BUILT_EXAMPLES, `${testRunPrefix()}${process.pid}`);
    rmSync(dir, { recursive: true, force: true });
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', resolve(ROOT, 'examples/tsconfig.json'), '--outDir', dir], { cwd: ROOT, stdio: 'pipe' });
    outDir = dir;
  }
  return resolve(outDir, file.replace(/\.ts$/, '.js'));
}
