import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testRunPrefix } from './volumes';

/**
 * A safety net: stop any nginx a crashed suite of this run left running
 * (suites stop their own). Only this run's: another jest run may be going on.
 */
export default function globalTeardown(): void {
  const prefix = testRunPrefix();
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
