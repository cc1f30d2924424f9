import { spawn } from 'node:child_process';

/**
 * Another process takes the index's write lock (`BEGIN IMMEDIATE`, or
 * `EXCLUSIVE`) and commits after `ms`, as a CLI job or an operator's sqlite3
 * shell would. A child process, not this one: better-sqlite3 is synchronous,
 * and a server in this process waiting on the lock would stop the event loop
 * that is to release it. Resolves once the lock is held; `released` resolves
 * when the child has committed and exited.
 */
export async function holdWriteLock(dbPath: string, ms: number, mode: 'IMMEDIATE' | 'EXCLUSIVE' = 'IMMEDIATE'): Promise<{ released: Promise<void> }> {
  const script = `
    const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))});
    const db = new Database(${JSON.stringify(dbPath)});
    db.exec('BEGIN ${mode}');
    process.stdout.write('locked\\n');
    setTimeout(() => { db.exec('COMMIT'); db.close(); }, ${ms});`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stderr!.on('data', (d) => (output += d));
  const released = new Promise<void>((resolve, reject) =>
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`lock holder exited with ${code}: ${output}`)))),
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('locked') && resolve());
    released.then(() => reject(new Error('lock holder exited before taking the lock')), reject);
  });
  return { released };
}
