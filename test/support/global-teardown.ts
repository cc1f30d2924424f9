import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUILT_EXAMPLES } from './examples';
import { testRunPrefix } from './volumes';

/**
 * A safety net: stop any nginx a crashed suite of this run left running
 * (suites stop their own), and remove the examples this run compiled. Only
 * this run's: another jest run may be going on.
 */
export default function globalTeardown(): void {
  const prefix = testRunPrefix();
  if (existsSync(BUILT_EXAMPLES)) {
    for (const built of readdirSync(BUILT_EXAMPLES).filter((name) => name.startsWith(prefix))) rmSync(join(BUILT_EXAMPLES, built), { recursive: true, force: true });
  }
  for (const run of readdirSync(tmpdir()).filter((name) => name.startsWith(prefix))) {
    const volumesDir = join(tmpdir(), run, 'volumes');
    if (!existsSync(volumesDir)) continue;
    for (const volume of readdirSync(volumesDir)) {
      const pidFile = join(volumesDir, volume, 'nginx.pid');
      if (!existsSync(pidFile)) continue;
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGTERM');
      } catch {
        // already gone
      }
    }
  }
}
