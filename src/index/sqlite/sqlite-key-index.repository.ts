import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { Statement } from 'better-sqlite3';
import { DataSource } from 'typeorm';
import { MkvError } from '../../common/mkv-error';
import type { BeganWrite, IndexUsage, KeyIndex } from '../key-index';
import type { KeyRecord, KeyState, ListOptions, WriteIntent } from '../key-record';
import { GroupCommit } from './group-commit';
import { KeyEntity } from './key.entity';
import { fromRow, KeyRow, recordOf, splitVolumes, toRow } from './key-row';
import { SqliteDatabase } from './sqlite-database';

interface IntentRow {
  id: string;
  key: string;
  temp_path: string;
  volumes: string;
  created_at: number;
}

/**
 * The serving index's SQL. TypeORM owns the schema (migrations) and the
 * listings; the per-request statements are the driver's prepared statements
 * (see SqliteDatabase). The changes a write or a delete makes (begin, finish,
 * abort) go through the group commit (GroupCommit); the rebuild's staging
 * is SqliteRebuildStaging's, on the same connection.
 */
@Injectable()
export class SqliteKeyIndex implements KeyIndex {
  private readonly statements: {
    exists: Statement<[string], { key: string }>;
    firstInRange: Statement<[string, string], { key: string }>;
    upsert: Statement<[KeyRow]>;
    delete: Statement<[string]>;
    notePendingDelete: Statement<[number, string]>;
    pendingDeleteOf: Statement<[string], { volumes: string }>;
    notePendingDeleteOn: Statement<[string, string, number]>;
    finishDelete: Statement<[string]>;
    pendingDeletes: Statement<[], { key: string; volumes: string }>;
    setState: Statement<[KeyState, number, string]>;
    insertIntent: Statement<[IntentRow]>;
    deleteIntent: Statement<[string]>;
    intents: Statement<[], IntentRow>;
    scan: Statement<[string, number], KeyRow>;
    setVolumes: Statement<[string, string]>;
    usage: Statement<[], { volume: string; keys: number; bytes: number }>;
    readProbe: Statement<[], { key: string }>;
    writeProbe: Statement<[]>;
  };

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly database: SqliteDatabase,
    private readonly groupCommit: GroupCommit,
  ) {
    const { db } = database;
    this.statements = {
      exists: db.prepare('SELECT key FROM keys WHERE key = ?'),
      firstInRange: db.prepare('SELECT key FROM keys WHERE key >= ? AND key < ? ORDER BY key LIMIT 1'),
      upsert: db.prepare(`
        INSERT INTO keys (key, volumes, size, md5, state, created_at, updated_at)
        VALUES (@key, @volumes, @size, @md5, @state, @created_at, @updated_at)
        ON CONFLICT (key) DO UPDATE SET volumes = excluded.volumes, size = excluded.size, md5 = excluded.md5,
          state = excluded.state, updated_at = excluded.updated_at`), // a key keeps its created time
      delete: db.prepare('DELETE FROM keys WHERE key = ?'),
      notePendingDelete: db.prepare('INSERT OR REPLACE INTO pending_deletes (key, volumes, created_at) SELECT key, volumes, ? FROM keys WHERE key = ?'),
      pendingDeleteOf: db.prepare('SELECT volumes FROM pending_deletes WHERE key = ?'),
      notePendingDeleteOn: db.prepare('INSERT OR REPLACE INTO pending_deletes (key, volumes, created_at) VALUES (?, ?, ?)'),
      finishDelete: db.prepare('DELETE FROM pending_deletes WHERE key = ?'),
      pendingDeletes: db.prepare('SELECT key, volumes FROM pending_deletes ORDER BY created_at'),
      setState: db.prepare('UPDATE keys SET state = ?, updated_at = ? WHERE key = ?'),
      insertIntent: db.prepare(
        'INSERT INTO write_intents (id, key, temp_path, volumes, created_at) VALUES (@id, @key, @temp_path, @volumes, @created_at)',
      ),
      deleteIntent: db.prepare('DELETE FROM write_intents WHERE id = ?'),
      intents: db.prepare('SELECT * FROM write_intents ORDER BY created_at'),
      scan: db.prepare('SELECT * FROM keys WHERE key > ? ORDER BY key LIMIT ?'),
      setVolumes: db.prepare('UPDATE keys SET volumes = ? WHERE key = ?'),
      usage: db.prepare('SELECT volume, keys, bytes FROM index_usage'),
      readProbe: db.prepare('SELECT key FROM keys LIMIT 1'),
      // Changes no row, so it commits no page; but it must take the write lock
      // and open the file for writing, which a read-only file or mount refuses.
      writeProbe: db.prepare('DELETE FROM write_intents WHERE 0'),
    };
  }

  async get(key: string): Promise<KeyRecord | undefined> {
    const row = this.database.guard(() => this.database.keys.getWithoutKey.get(key));
    return row && recordOf(key, row);
  }

  async findConflict(key: string): Promise<string | undefined> {
    return this.database.guard(() => this.conflictOf(key));
  }

  async beginWrite(record: KeyRecord, intent: WriteIntent): Promise<BeganWrite> {
    return this.groupCommit.run((): BeganWrite => {
      // Checked in the same transaction as the insert, so two conflicting keys
      // cannot both pass the check and both be recorded.
      const conflict = this.conflictOf(record.key);
      if (conflict !== undefined) return { conflict };
      const previous = this.database.keys.get.get(record.key);
      this.statements.upsert.run(toRow(record));
      this.statements.finishDelete.run(record.key); // the new value's blobs must not be deleted by a retry
      this.insertIntent(intent);
      return { previous: previous && fromRow(previous) };
    });
  }

  async beginDirectWrite(intent: WriteIntent): Promise<void> {
    await this.groupCommit.runStatement(() => this.insertIntent(intent));
  }

  async commitDirectWrite(record: KeyRecord, intentId: string): Promise<string | undefined> {
    return this.groupCommit.run(() => {
      // In the transaction that stores the record, as in beginWrite, so two
      // conflicting keys cannot both be recorded.
      const conflict = this.conflictOf(record.key);
      if (conflict !== undefined) return conflict;
      this.statements.upsert.run(toRow(record));
      this.statements.finishDelete.run(record.key); // the new value's blobs must not be deleted by a retry
      this.statements.deleteIntent.run(intentId);
      return undefined;
    });
  }

  private insertIntent(intent: WriteIntent): void {
    this.statements.insertIntent.run({
      id: intent.id,
      key: intent.key,
      temp_path: intent.tempPath,
      volumes: intent.volumes.join(','),
      created_at: intent.createdAt,
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
    // Every write that went as planned: the intent's drop alone, one statement.
    if (!record) {
      await this.groupCommit.runStatement(() => this.statements.deleteIntent.run(intentId));
      return;
    }
    return this.groupCommit.run(() => {
      this.statements.upsert.run(toRow(record));
      this.statements.deleteIntent.run(intentId);
    });
  }

  async abortWrite(intentId: string, key: string, previous: KeyRecord | undefined, undeleted: string[] = []): Promise<void> {
    return this.groupCommit.run(() => {
      if (previous) this.statements.upsert.run(toRow(previous));
      else this.statements.delete.run(key);
      this.statements.deleteIntent.run(intentId);
      if (undeleted.length > 0) {
        const noted = splitVolumes(this.statements.pendingDeleteOf.get(key)?.volumes ?? '');
        const volumes = [...noted, ...undeleted.filter((volume) => !noted.includes(volume))];
        this.statements.notePendingDeleteOn.run(key, volumes.join(','), Date.now());
      }
    });
  }

  async pendingWrites(): Promise<WriteIntent[]> {
    return this.database.guard(() =>
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
    this.database.guard(() => this.statements.setState.run(state, updatedAt, key));
  }

  async beginDelete(key: string, options: { unlessLive?: boolean } = {}): Promise<KeyRecord | undefined> {
    return this.groupCommit.run(() => {
      const row = this.database.keys.get.get(key);
      if (row === undefined || (options.unlessLive && row.state === 'live')) return row && fromRow(row);
      this.statements.notePendingDelete.run(Date.now(), key);
      this.statements.delete.run(key);
      return fromRow(row);
    });
  }

  async finishDelete(key: string): Promise<void> {
    await this.groupCommit.runStatement(() => this.statements.finishDelete.run(key));
  }

  async pendingDeletes(): Promise<{ key: string; volumes: string[] }[]> {
    return this.database.guard(() => this.statements.pendingDeletes.all().map((row) => ({ key: row.key, volumes: splitVolumes(row.volumes) })));
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
    return this.database.guard(() => this.statements.scan.all(after ?? '', limit).map(fromRow));
  }

  async count(): Promise<number> {
    return this.database.guard(() => this.database.keys.count.get()!.n);
  }

  /** From the counters the triggers keep (see usage-counters.ts): no pass over the keys. */
  async usage(): Promise<IndexUsage> {
    return this.database.guard(() => {
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
    this.database.guard(() => {
      this.statements.readProbe.get();
      const busyTimeout = this.database.db.pragma('busy_timeout', { simple: true }) as number;
      this.database.db.pragma('busy_timeout = 0');
      try {
        this.statements.writeProbe.run();
      } catch (error) {
        if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
      } finally {
        this.database.db.pragma(`busy_timeout = ${busyTimeout}`);
      }
    });
  }

  async setVolumes(key: string, volumes: string[]): Promise<void> {
    this.database.guard(() => this.statements.setVolumes.run(volumes.join(','), key));
  }
}

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
