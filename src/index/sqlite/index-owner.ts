import Database from 'better-sqlite3';
import { accessSync, constants, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { IndexInUseError } from '../index-in-use.error';

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
  private watch: NodeJS.Timeout | undefined;

  private constructor(
    private lock: Database.Database | undefined,
    private readonly db: string,
    private readonly pidFile: string | undefined,
  ) {}

  /** Takes the index for this process, or throws IndexInUseError at once. An in-memory index needs no lock. */
  static claim(db: string): IndexOwner {
    if (db === ':memory:') return new IndexOwner(undefined, db, undefined);
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
    return new IndexOwner(lock, db, pidFile);
  }

  /**
   * Checks every `everyMs` that the index's files can still be written, and
   * calls `onLost` once when one cannot: made immutable (chattr +i) or its
   * file system remounted read-only. SQLite does not say so in time: a
   * checkpoint into the index fails silently, and the next write to a page
   * of its memory-mapped -shm that the kernel has written back faults with
   * SIGBUS, which kills the process with nothing logged. The kernel writes
   * dirty pages back only every few seconds, so this check usually sees it
   * first.
   */
  watchWritable(everyMs: number, onLost: (file: string, error: NodeJS.ErrnoException) => void): void {
    if (!this.lock) return;
    const files = [this.db, `${this.db}-wal`, `${this.db}-shm`];
    this.watch = setInterval(() => {
      for (const file of files) {
        try {
          accessSync(file, constants.W_OK);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue; // -wal and -shm come and go
          clearInterval(this.watch);
          onLost(file, error as NodeJS.ErrnoException);
          return;
        }
      }
    }, everyMs).unref(); // never what keeps the process up
  }

  /** Lets the next process have the index. The pid file goes first, while it is still ours to remove. */
  release(): void {
    clearInterval(this.watch);
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
