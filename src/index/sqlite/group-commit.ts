import { Injectable } from '@nestjs/common';
import { MkvError } from '../../common/mkv-error';
import { SqliteDatabase } from './sqlite-database';

/** A change to the index waiting for the next commit, and its caller. */
interface QueuedChange {
  change: () => unknown;
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
      for (const { change } of group) {
        try {
          outcomes.push({ value: this.inSavepoint(change) });
        } catch (error) {
          outcomes.push({ error });
        }
      }
    }).immediate;
  }

  /** Runs the change in the next group commit; resolves once that is committed. */
  run<T>(change: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queued.push({ change, resolve: resolve as (value: unknown) => void, reject });
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
