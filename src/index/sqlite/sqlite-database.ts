import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { Database, Statement } from 'better-sqlite3';
import { DataSource } from 'typeorm';
import { MkvError } from '../../common/mkv-error';
import type { KeyRow } from './key-row';

/**
 * The raw better-sqlite3 connection under TypeORM's DataSource, and what the
 * serving index, its group commit and the rebuild's staging all do with it:
 * the per-request statements are the driver's prepared statements on the
 * same connection, several times faster than the repository API.
 *
 * Every write transaction begins IMMEDIATE (see writeTransaction): one begun
 * deferred that reads before it writes gets "database is locked" at once
 * when another connection holds the write lock, since SQLite does not run
 * the busy handler (busy_timeout) on a read lock's upgrade.
 */
@Injectable()
export class SqliteDatabase {
  readonly db: Database;
  /** The statements on `keys` both the serving index and the staging read with. */
  readonly keys: {
    get: Statement<[string], KeyRow>;
    /** A key's row without the key itself, which the caller has: one string less to make on every GET and HEAD. */
    getWithoutKey: Statement<[string], Omit<KeyRow, 'key'>>;
    count: Statement<[], { n: number }>;
  };

  constructor(@InjectDataSource() dataSource: DataSource) {
    this.db = (dataSource.driver as unknown as { databaseConnection: Database }).databaseConnection;
    this.keys = {
      get: this.db.prepare('SELECT * FROM keys WHERE key = ?'),
      getWithoutKey: this.db.prepare('SELECT volumes, size, md5, state, created_at, updated_at FROM keys WHERE key = ?'),
      count: this.db.prepare('SELECT COUNT(*) AS n FROM keys'),
    };
  }

  /** Runs `work` in a transaction that takes the write lock first, waiting for it up to busy_timeout. */
  writeTransaction<T>(work: () => T): T {
    return this.db.transaction(work).immediate();
  }

  /** Runs `work`, turning whatever it throws into MkvError(DatabaseError). */
  guard<T>(work: () => T): T {
    try {
      return work();
    } catch (error) {
      throw MkvError.database(error);
    }
  }
}
