import Database from 'better-sqlite3';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { IndexInUseError } from './index-in-use.error';

/**
 * The one process allowed to open an index file: a server or a CLI job, never
 * two at once (two would each recover the other's writes in flight and race
 * each other's commits).
 *
 * The lock is SQLite's own, on an empty sidecar database `<db>.lock`: an
 * exclusive transaction held open for the process's life. The kernel drops
 * that lock (a POSIX fcntl lock) when the process dies, so a `kill -9` never
 * leaves the index locked. The index itself is not locked so: operators'
 * sqlite3 shells must still read it.
 * The owner's pid is in `<db>.pid`, only to name it in the refusal; a stale
 * pid file locks nothing. The lock file is never deleted: a process that had
 * opened it could otherwise lock a file nobody else sees.
 */
export class IndexOwner {
  private constructor(
    private lock: Database.Database | undefined,
    private readonly pidFile: string | undefined,
  ) {}

  /** Takes the index for this process, or throws IndexInUseError at once. An in-memory index needs no lock. */
  static claim(db: string): IndexOwner {
    if (db === ':memory:') return new IndexOwner(undefined, undefined);
    const lock = new Database(`${db}.lock`, { timeout: 0 });
    try {
      lock.exec('BEGIN EXCLUSIVE'); // never committed: the lock lasts until the connection closes
    } catch (error) {
      lock.close();
      if ((error as { code?: string }).code === 'SQLITE_BUSY') throw new IndexInUseError(db, readPid(`${db}.pid`));
      throw error;
    }
    const pidFile = `${db}.pid`;
    writeFileSync(`${pidFile}.tmp`, `${process.pid}\n`);
    renameSync(`${pidFile}.tmp`, pidFile); // a reader sees the old pid or the new one, never half of one
    return new IndexOwner(lock, pidFile);
  }

  /** Lets the next process have the index. The pid file goes first, while it is still ours to remove. */
  release(): void {
    if (!this.lock) return;
    rmSync(this.pidFile!, { force: true });
    this.lock.close();
    this.lock = undefined;
  }
}

function readPid(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
