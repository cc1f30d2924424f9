import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { Database, Statement } from 'better-sqlite3';
import { DataSource } from 'typeorm';
import { MkvError } from '../../common/mkv-error';
import type { BeganWrite, IndexUsage, KeyIndex } from '../key-index';
import type { FoundBlob, KeyRecord, KeyState, ListOptions, WriteIntent } from '../key-record';
import { KeyEntity } from './key.entity';
import { RECOUNT_USAGE, USAGE_TRIGGERS } from './usage-counters';

interface KeyRow {
  key: string;
  volumes: string;
  size: number;
  md5: string;
  state: KeyState;
  created_at: number;
  updated_at: number;
}

interface IntentRow {
  id: string;
  key: string;
  temp_path: string;
  volumes: string;
  created_at: number;
}

/** A change to the index waiting for the next commit, and its caller. */
interface QueuedChange {
  change: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * All of the index's SQL. TypeORM owns the schema (migrations) and the
 * listings; the per-request statements are the driver's prepared statements
 * on the same connection, several times faster than the repository API.
 *
 * The changes a write or a delete makes (begin, finish, abort) are committed
 * in groups: each is queued, and all those queued while the event loop
 * handled one round of I/O are committed in one transaction, each inside its
 * own savepoint. A change that fails is rolled back alone and rejects alone;
 * a commit that fails rejects all of its group, none of which then happened.
 * Every caller is answered only after its change is committed, so nothing
 * (a MOVE, a blob delete, a reply) acts on a change that is not yet durable
 * as far as SQLite's synchronous=NORMAL goes. A write transaction costs far
 * more than the statements in it (its WAL frames), so under load this cuts
 * the index's share of a PUT several times.
 *
 * Every write transaction begins IMMEDIATE (see writeTransaction): one begun
 * deferred that reads before it writes gets "database is locked" at once
 * when another connection holds the write lock, since SQLite does not run
 * the busy handler (busy_timeout) on a read lock's upgrade.
 */
@Injectable()
export class SqliteKeyIndex implements KeyIndex {
  private readonly db: Database;
  private readonly statements: {
    get: Statement<[string], KeyRow>;
    exists: Statement<[string], { key: string }>;
    firstInRange: Statement<[string, string], { key: string }>;
    upsert: Statement<[KeyRow]>;
    delete: Statement<[string]>;
    notePendingDelete: Statement<[number, string]>;
    finishDelete: Statement<[string]>;
    pendingDeletes: Statement<[], { key: string; volumes: string }>;
    setState: Statement<[KeyState, number, string]>;
    insertIntent: Statement<[IntentRow]>;
    deleteIntent: Statement<[string]>;
    intents: Statement<[], IntentRow>;
    scan: Statement<[string, number], KeyRow>;
    count: Statement<[], { n: number }>;
    setVolumes: Statement<[string, string]>;
    usage: Statement<[], { volume: string; keys: number; bytes: number }>;
    readProbe: Statement<[], { key: string }>;
    writeProbe: Statement<[]>;
  };
  private readonly inSavepoint: (change: () => unknown) => unknown;
  private readonly commitGroup: (group: QueuedChange[], outcomes: ({ value: unknown } | { error: unknown })[]) => void;
  private queued: QueuedChange[] = [];

  constructor(@InjectDataSource() private readonly dataSource: DataSource) {
    this.db = (dataSource.driver as unknown as { databaseConnection: Database }).databaseConnection;
    const db = this.db;
    this.statements = {
      get: db.prepare('SELECT * FROM keys WHERE key = ?'),
      exists: db.prepare('SELECT key FROM keys WHERE key = ?'),
      firstInRange: db.prepare('SELECT key FROM keys WHERE key >= ? AND key < ? ORDER BY key LIMIT 1'),
      upsert: db.prepare(`
        INSERT INTO keys (key, volumes, size, md5, state, created_at, updated_at)
        VALUES (@key, @volumes, @size, @md5, @state, @created_at, @updated_at)
        ON CONFLICT (key) DO UPDATE SET volumes = excluded.volumes, size = excluded.size, md5 = excluded.md5,
          state = excluded.state, updated_at = excluded.updated_at`), // a key keeps its created time
      delete: db.prepare('DELETE FROM keys WHERE key = ?'),
      notePendingDelete: db.prepare('INSERT OR REPLACE INTO pending_deletes (key, volumes, created_at) SELECT key, volumes, ? FROM keys WHERE key = ?'),
      finishDelete: db.prepare('DELETE FROM pending_deletes WHERE key = ?'),
      pendingDeletes: db.prepare('SELECT key, volumes FROM pending_deletes ORDER BY created_at'),
      setState: db.prepare('UPDATE keys SET state = ?, updated_at = ? WHERE key = ?'),
      insertIntent: db.prepare(
        'INSERT INTO write_intents (id, key, temp_path, volumes, created_at) VALUES (@id, @key, @temp_path, @volumes, @created_at)',
      ),
      deleteIntent: db.prepare('DELETE FROM write_intents WHERE id = ?'),
      intents: db.prepare('SELECT * FROM write_intents ORDER BY created_at'),
      scan: db.prepare('SELECT * FROM keys WHERE key > ? ORDER BY key LIMIT ?'),
      count: db.prepare('SELECT COUNT(*) AS n FROM keys'),
      setVolumes: db.prepare('UPDATE keys SET volumes = ? WHERE key = ?'),
      usage: db.prepare('SELECT volume, keys, bytes FROM index_usage'),
      readProbe: db.prepare('SELECT key FROM keys LIMIT 1'),
      // Changes no row, so it commits no page; but it must take the write lock
      // and open the file for writing, which a read-only file or mount refuses.
      writeProbe: db.prepare('DELETE FROM write_intents WHERE 0'),
    };
    this.inSavepoint = db.transaction((change: () => unknown) => change());
    this.commitGroup = db.transaction((group: QueuedChange[], outcomes: ({ value: unknown } | { error: unknown })[]) => {
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
  private enqueue<T>(change: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queued.push({ change, resolve: resolve as (value: unknown) => void, reject });
      if (this.queued.length === 1) setImmediate(this.commitQueued);
    });
  }

  private readonly commitQueued = (): void => {
    const group = this.queued;
    this.queued = [];
    const outcomes: ({ value: unknown } | { error: unknown })[] = [];
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

  async get(key: string): Promise<KeyRecord | undefined> {
    const row = this.guard(() => this.statements.get.get(key));
    return row && fromRow(row);
  }

  async findConflict(key: string): Promise<string | undefined> {
    return this.guard(() => this.conflictOf(key));
  }

  async beginWrite(record: KeyRecord, intent: WriteIntent): Promise<BeganWrite> {
    return this.enqueue((): BeganWrite => {
      // Checked in the same transaction as the insert, so two conflicting keys
      // cannot both pass the check and both be recorded.
      const conflict = this.conflictOf(record.key);
      if (conflict !== undefined) return { conflict };
      const previous = this.statements.get.get(record.key);
      this.statements.upsert.run(toRow(record));
      this.statements.finishDelete.run(record.key); // the new value's blobs must not be deleted by a retry
      this.statements.insertIntent.run({
        id: intent.id,
        key: intent.key,
        temp_path: intent.tempPath,
        volumes: intent.volumes.join(','),
        created_at: intent.createdAt,
      });
      return { previous: previous && fromRow(previous) };
    });
  }

  private conflictOf(key: string): string | undefined {
    // An ancestor that is a key needs to be a file where this key needs a directory...
    const segments = key.split('/');
    for (let i = 1; i < segments.length; i++) {
      const ancestor = segments.slice(0, i).join('/');
      if (this.statements.exists.get(ancestor)) return ancestor;
    }
    // ...and any key below this one needs this key's path to be a directory.
    // '0' is the character after '/', so the range is exactly the "key/" prefix.
    return this.statements.firstInRange.get(`${key}/`, `${key}0`)?.key;
  }

  async finishWrite(intentId: string, record?: KeyRecord): Promise<void> {
    return this.enqueue(() => {
      if (record) this.statements.upsert.run(toRow(record));
      this.statements.deleteIntent.run(intentId);
    });
  }

  async abortWrite(intentId: string, key: string, previous: KeyRecord | undefined): Promise<void> {
    return this.enqueue(() => {
      if (previous) this.statements.upsert.run(toRow(previous));
      else this.statements.delete.run(key);
      this.statements.deleteIntent.run(intentId);
    });
  }

  async pendingWrites(): Promise<WriteIntent[]> {
    return this.guard(() =>
      this.statements.intents.all().map((row) => ({
        id: row.id,
        key: row.key,
        tempPath: row.temp_path,
        volumes: splitVolumes(row.volumes),
        createdAt: row.created_at,
      })),
    );
  }

  async setState(key: string, state: KeyState, updatedAt: number): Promise<void> {
    this.guard(() => this.statements.setState.run(state, updatedAt, key));
  }

  async beginDelete(key: string, options: { unlessLive?: boolean } = {}): Promise<KeyRecord | undefined> {
    return this.enqueue(() => {
      const row = this.statements.get.get(key);
      if (row === undefined || (options.unlessLive && row.state === 'live')) return row && fromRow(row);
      this.statements.notePendingDelete.run(Date.now(), key);
      this.statements.delete.run(key);
      return fromRow(row);
    });
  }

  async finishDelete(key: string): Promise<void> {
    return this.enqueue(() => {
      this.statements.finishDelete.run(key);
    });
  }

  async pendingDeletes(): Promise<{ key: string; volumes: string[] }[]> {
    return this.guard(() => this.statements.pendingDeletes.all().map((row) => ({ key: row.key, volumes: splitVolumes(row.volumes) })));
  }

  async list({ prefix, start, limit, state }: ListOptions): Promise<string[]> {
    // A range on the primary key, not LIKE: it walks the B-tree in byte order.
    const query = this.dataSource
      .getRepository(KeyEntity)
      .createQueryBuilder('k')
      .select('k.key', 'key')
      .where('k.state = :state', { state })
      .orderBy('k.key', 'ASC')
      .limit(limit + 1);
    // Both bounds go to SQLite: JavaScript's string order (UTF-16) is not its byte order.
    if (prefix) query.andWhere('k.key >= :prefix', { prefix });
    if (start) query.andWhere('k.key >= :start', { start });
    const upper = prefixUpperBound(prefix);
    if (upper !== undefined) query.andWhere('k.key < :upper', { upper });
    try {
      return (await query.getRawMany<{ key: string }>()).map((row) => row.key);
    } catch (error) {
      throw MkvError.database(error);
    }
  }

  async scan(after: string | undefined, limit: number): Promise<KeyRecord[]> {
    return this.guard(() => this.statements.scan.all(after ?? '', limit).map(fromRow));
  }

  async count(): Promise<number> {
    return this.guard(() => this.statements.count.get()!.n);
  }

  /** From the counters the triggers keep (see usage-counters.ts): no pass over the keys. */
  async usage(): Promise<IndexUsage> {
    return this.guard(() => {
      const rows = this.statements.usage.all();
      const totals = rows.find((row) => row.volume === '');
      const volumes = rows.filter((row) => row.volume !== '' && row.keys > 0);
      return { keys: totals?.keys ?? 0, bytes: totals?.bytes ?? 0, volumes };
    });
  }

  /**
   * A read and a write that changes nothing (about 12 µs, no WAL growth).
   * Another connection holding the write lock is contention, not a fault:
   * writers wait for it, so the probe does not wait (busy_timeout 0 for its
   * one statement) and takes the lock being held as the index answering.
   */
  async ping(): Promise<void> {
    this.guard(() => {
      this.statements.readProbe.get();
      const busyTimeout = this.db.pragma('busy_timeout', { simple: true }) as number;
      this.db.pragma('busy_timeout = 0');
      try {
        this.statements.writeProbe.run();
      } catch (error) {
        if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
      } finally {
        this.db.pragma(`busy_timeout = ${busyTimeout}`);
      }
    });
  }

  async setVolumes(key: string, volumes: string[]): Promise<void> {
    this.guard(() => this.statements.setVolumes.run(volumes.join(','), key));
  }

  async beginRebuild(): Promise<void> {
    this.guard(() =>
      this.writeTransaction(() => {
        this.dropRebuild();
        // The staging table is the serving table's own DDL under another name,
        // so the two can never drift apart.
        const { sql } = this.db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'keys'").get() as { sql: string };
        this.db.exec(sql.replace(/^CREATE TABLE "keys"/, 'CREATE TABLE "keys_rebuild"'));
        // Every key the serving index changes from now on (a write, unlink or
        // delete) is noted, so the swap takes those rows from the serving index
        // rather than from a walk that may have passed them by.
        this.db.exec(`CREATE TABLE "rebuild_changed" ("key" TEXT NOT NULL PRIMARY KEY) WITHOUT ROWID`);
        for (const event of ['INSERT', 'UPDATE', 'DELETE']) {
          const row = event === 'DELETE' ? 'OLD' : 'NEW';
          // Not INSERT OR IGNORE: a trigger takes the conflict policy of the statement that fired it.
          this.db.exec(`CREATE TRIGGER "rebuild_on_${event.toLowerCase()}" AFTER ${event} ON "keys"
                        BEGIN INSERT INTO "rebuild_changed" ("key") SELECT ${row}."key"
                          WHERE NOT EXISTS (SELECT 1 FROM "rebuild_changed" WHERE "key" = ${row}."key"); END`);
        }
        // Copies found where the serving index does not list their key (see stageFound).
        this.db.exec(`CREATE TABLE "rebuild_strays" ("key" TEXT NOT NULL, "volume" TEXT NOT NULL, "size" INTEGER NOT NULL,
                        "mtime" INTEGER NOT NULL, "adopted" INTEGER NOT NULL DEFAULT 0, PRIMARY KEY ("key", "volume")) WITHOUT ROWID`);
      }),
    );
  }

  /**
   * A copy of a key the serving index knows, on a volume it does not list
   * for that key, is not staged on its size alone (a stray: a failed delete,
   * another cluster's file, other bytes of the same length): it is set aside,
   * and adopted only if none of the known replicas is found (adoptStrays).
   */
  async stageFound(blobs: FoundBlob[]): Promise<FoundBlob[]> {
    return this.guard(() => {
      const stage = this.db.prepare(STAGE_FOUND);
      const setAside = this.db.prepare('INSERT OR REPLACE INTO rebuild_strays (key, volume, size, mtime) VALUES (@key, @volume, @size, @mtime)');
      const strays: FoundBlob[] = [];
      this.writeTransaction(() => {
        for (const blob of blobs) {
          const known = this.statements.get.get(blob.key);
          if (known && !splitVolumes(known.volumes).includes(blob.volume)) {
            setAside.run(blob);
            strays.push(blob);
          } else {
            stage.run(blob);
          }
        }
      });
      return strays;
    });
  }

  async adoptStrays(): Promise<{ key: string; volumes: string[] }[]> {
    return this.guard(() =>
      this.writeTransaction(() => {
        this.db.prepare('UPDATE rebuild_strays SET adopted = 1 WHERE key NOT IN (SELECT key FROM keys_rebuild)').run();
        const stage = this.db.prepare(STAGE_FOUND);
        for (const blob of this.db.prepare('SELECT key, volume, size, mtime FROM rebuild_strays WHERE adopted = 1').all() as FoundBlob[]) {
          stage.run(blob);
        }
        const adopted = this.db
          .prepare('SELECT key, volumes FROM keys_rebuild WHERE key IN (SELECT key FROM rebuild_strays WHERE adopted = 1) ORDER BY key')
          .all() as { key: string; volumes: string }[];
        return adopted.map(({ key, volumes }) => ({ key, volumes: splitVolumes(volumes) }));
      }),
    );
  }

  async scanStaged(after: string | undefined, limit: number): Promise<KeyRecord[]> {
    return this.guard(() =>
      (this.db.prepare('SELECT * FROM keys_rebuild WHERE key > ? ORDER BY key LIMIT ?').all(after ?? '', limit) as KeyRow[]).map(fromRow),
    );
  }

  async setStagedVolumes(updates: { key: string; volumes: string[] }[]): Promise<void> {
    this.guard(() => {
      const update = this.db.prepare('UPDATE keys_rebuild SET volumes = ? WHERE key = ?');
      this.writeTransaction(() => {
        for (const { key, volumes } of updates) update.run(volumes.join(','), key);
      });
    });
  }

  async getStaged(keys: string[]): Promise<KeyRecord[]> {
    if (keys.length === 0) return [];
    return this.guard(() =>
      (this.db.prepare(`SELECT * FROM keys_rebuild WHERE key IN (SELECT value FROM json_each(?))`).all(JSON.stringify(keys)) as KeyRow[]).map(fromRow),
    );
  }

  async dropStaged(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    this.guard(() => this.db.prepare('DELETE FROM keys_rebuild WHERE key IN (SELECT value FROM json_each(?))').run(JSON.stringify(keys)));
  }

  async swapRebuild(): Promise<number> {
    return this.guard(() =>
      this.writeTransaction(() => {
        // Keys changed since the rebuild began, or with a write still renaming
        // its uploads or a delete still removing its blobs: the serving index
        // knows better than the walk.
        const serving = 'SELECT key FROM rebuild_changed UNION SELECT key FROM write_intents UNION SELECT key FROM pending_deletes';
        this.db.prepare(`DELETE FROM keys_rebuild WHERE key IN (${serving})`).run();
        this.db.prepare(`INSERT INTO keys_rebuild SELECT * FROM keys WHERE key IN (${serving})`).run();
        this.db
          .prepare(
            `UPDATE keys_rebuild SET state = old.state, created_at = old.created_at,
               md5 = CASE WHEN old.size = keys_rebuild.size AND keys_rebuild.key NOT IN (SELECT key FROM rebuild_strays WHERE adopted = 1)
                          THEN old.md5 ELSE keys_rebuild.md5 END
             FROM keys AS old WHERE old.key = keys_rebuild.key`,
          )
          .run();
        this.dropRebuildTracking();
        this.db.exec('DROP TABLE keys; ALTER TABLE keys_rebuild RENAME TO keys');
        // The usage triggers went with the old table.
        for (const statement of [...USAGE_TRIGGERS, ...RECOUNT_USAGE]) this.db.exec(statement);
        return this.statements.count.get()!.n;
      }),
    );
  }

  async abandonRebuild(): Promise<void> {
    this.guard(() => this.writeTransaction(() => this.dropRebuild()));
  }

  private dropRebuild(): void {
    this.dropRebuildTracking();
    this.db.exec('DROP TABLE IF EXISTS keys_rebuild');
  }

  private dropRebuildTracking(): void {
    for (const event of ['insert', 'update', 'delete']) this.db.exec(`DROP TRIGGER IF EXISTS rebuild_on_${event}`);
    this.db.exec('DROP TABLE IF EXISTS rebuild_changed');
    this.db.exec('DROP TABLE IF EXISTS rebuild_strays');
  }

  /** Runs `work` in a transaction that takes the write lock first, waiting for it up to busy_timeout. */
  private writeTransaction<T>(work: () => T): T {
    return this.db.transaction(work).immediate();
  }

  private guard<T>(work: () => T): T {
    try {
      return work();
    } catch (error) {
      throw MkvError.database(error);
    }
  }
}

/** Merges a found copy into its key's staged row: a copy of the same size adds its volume, one of another size keeps the newer. */
const STAGE_FOUND = `
  INSERT INTO keys_rebuild (key, volumes, size, md5, state, created_at, updated_at)
  VALUES (@key, @volume, @size, '', 'live', @mtime, @mtime)
  ON CONFLICT (key) DO UPDATE SET
    volumes = CASE WHEN excluded.size = size THEN volumes || ',' || excluded.volumes
                   WHEN excluded.updated_at > updated_at THEN excluded.volumes ELSE volumes END,
    size = CASE WHEN excluded.size <> size AND excluded.updated_at > updated_at THEN excluded.size ELSE size END,
    created_at = min(created_at, excluded.created_at),
    updated_at = max(updated_at, excluded.updated_at)`; // in an UPDATE, every expression sees the row as it was before it

/**
 * The smallest string greater than every string that starts with `prefix`, in
 * code point order (which is UTF-8 byte order): the last code point plus one.
 */
export function prefixUpperBound(prefix: string): string | undefined {
  const codePoints = Array.from(prefix);
  while (codePoints.length > 0) {
    const last = codePoints.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) {
      const next = last === 0xd7ff ? 0xe000 : last + 1; // skip the surrogate range
      return codePoints.join('') + String.fromCodePoint(next);
    }
  }
  return undefined;
}

function splitVolumes(volumes: string): string[] {
  return volumes === '' ? [] : volumes.split(',');
}

function toRow(record: KeyRecord): KeyRow {
  return {
    key: record.key,
    volumes: record.volumes.join(','),
    size: record.size,
    md5: record.md5,
    state: record.state,
    created_at: record.createdAt,
    updated_at: record.updatedAt,
  };
}

function fromRow(row: KeyRow): KeyRecord {
  return {
    key: row.key,
    volumes: splitVolumes(row.volumes),
    size: row.size,
    md5: row.md5,
    state: row.state,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
