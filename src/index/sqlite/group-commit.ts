import { Injectable } from '@nestjs/common';
import { MkvError } from '../../common/mkv-error';
import { SqliteDatabase } from './sqlite-database';

/** A change to the index waiting for the next commit, and its caller. */
interface QueuedChange {
  change: () => unknown;
  /** False for a single statement: SQLite undoes a failed statement alone, no savepoint needed. */
  savepoint: boolean;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { value: unknown } | { error: unknown };

/**
 * Commits the serving index's changes in groups: each is queued, and all
 * those queued while the event loop handled one round of I/O are committed
 * in one transaction, each inside its own savepoint. A change that fails is
 * rolled back alone and rejects alone; a commit that fails rejects all of its
 * group, none of which then happened. Every caller is answered only after
 * its change is committed, so nothing (a MOVE, a blob delete, a reply) acts
 * on a change that is not yet durable as far as SQLite's synchronous=NORMAL
 * goes. A write transaction costs far more than the statements in it (its
 * WAL frames), so under load this cuts the index's share of a PUT several
 * times. The group's transaction begins IMMEDIATE, as every write
 * transaction does (see SqliteDatabase).
 */
@Injectable()
export class GroupCommit {
  private readonly inSavepoint: (change: () => unknown) => unknown;
  private readonly commitGroup: (group: QueuedChange[], outcomes: Outcome[]) => void;
  private queued: QueuedChange[] = [];

  constructor(database: SqliteDatabase) {
    const { db } = database;
    this.inSavepoint = db.transaction((change: () => unknown) => change());
    this.commitGroup = db.transaction((group: QueuedChange[], outcomes: Outcome[]) => {
      for (const { change, savepoint } of group) {
        try {
          outcomes.push({ value: savepoint ? this.inSavepoint(change) : change() });
        } catch (error) {
          // Some errors (a full disk, an I/O error) make SQLite roll the whole
          // transaction back: the changes after this one would then each commit
          // on their own, outside the group. Fail the group instead.
          if (!db.inTransaction) throw error;
          outcomes.push({ error });
        }
      }
    }).immediate;
  }

  /** Runs the change in the next group commit, in a savepoint of its own; resolves once that is committed. */
  run<T>(change: () => T): Promise<T> {
    return this.enqueue(change, true);
  }

  /**
   * As run, for a change that is one statement: a statement that fails is
   * undone by SQLite alone, so it needs no savepoint (which costs about as
   * much as the statement).
   */
  runStatement<T>(statement: () => T): Promise<T> {
    return this.enqueue(statement, false);
  }

  private enqueue<T>(change: () => T, savepoint: boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queued.push({ change, savepoint, resolve: resolve as (value: unknown) => void, reject });
      if (this.queued.length === 1) setImmediate(this.commitQueued);
    });
  }

  private readonly commitQueued = (): void => {
    const group = this.queued;
    this.queued = [];
    const outcomes: Outcome[] = [];
    try {
      this.commitGroup(group, outcomes);
    } catch (error) {
      for (const { reject } of group) reject(MkvError.database(error));
      return;
    }
    group.forEach(({ resolve, reject }, i) => {
      const outcome = outcomes[i];
      if ('error' in outcome) reject(MkvError.database(outcome.error));
      else resolve(outcome.value);
    });
  };
}
