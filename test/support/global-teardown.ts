import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A safety net: stop any test nginx a crashed suite left running (suites stop their own). */
export default function globalTeardown(): void {
  for (const run of readdirSync(tmpdir()).filter((name) => name.startsWith('mkv-test-'))) {
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
