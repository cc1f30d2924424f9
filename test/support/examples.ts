import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';

const ROOT = resolve(__dirname, '../..');
let outDir: string | undefined;

/**
 * Compiles examples/ against the package's built declarations (dist/, as a
 * team's project sees them) and returns the path of one example's compiled
 * module file, for `mkv serve --module`. Once per test process, into a folder
 * of its own under examples/dist (inside the package, so the examples'
 * `require('mkv')` finds this checkout's dist/ as Node's self-reference).
 * Run `npm run build` first (npm test does).
 */
export function builtExample(file: string): string {
  if (outDir === undefined) {
    const dir = resolve(ROOT, 'examples/dist', `jest-${process.pid}`);
    rmSync(dir, { recursive: true, force: true });
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', resolve(ROOT, 'examples/tsconfig.json'), '--outDir', dir], { cwd: ROOT, stdio: 'pipe' });
    outDir = dir;
  }
  return resolve(outDir, file.replace(/\.ts$/, '.js'));
}
