import { TestingModule } from '@nestjs/testing';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { compileSqliteIndex, intent, record } from '../../../test/support/index-records';
import { KEY_INDEX } from '../key-index';
import { prefixUpperBound, SqliteKeyIndex } from './sqlite-key-index.repository';

describe(prefixUpperBound.name, () => {
  it.each([
    ['', undefined],
    ['a', 'b'],
    ['a/', 'a0'],
    ['é', 'ê'],
    ['a\u{10FFFF}', 'b'],
    ['ab\u{10FFFF}\u{10FFFF}', 'ac'],
    ['\u{10FFFF}', undefined],
    ['\uD7FF', '\uE000'],
    ['a\uFFFF', 'a\u{10000}'],
    ['\u{1F600}', '\u{1F601}'],
  ])('bounds the prefix %j by %j', (prefix, bound) => {
    expect(prefixUpperBound(prefix)).toBe(bound);
  });
});

/**
 * What is SQLite's own. The behaviour every index shares (writes, conflicts,
 * listing, scan, usage, deletes) is checked on SQLite too, by
 * src/index/key-index.contract.spec.ts.
 */
describe(SqliteKeyIndex.name, () => {
  let moduleRef: TestingModule;
  let index: SqliteKeyIndex;

  beforeEach(async () => {
    moduleRef = await compileSqliteIndex();
    index = moduleRef.get(SqliteKeyIndex);
  });

  afterEach(async () => {
    await moduleRef.close();
  });

  it('is the provider behind KEY_INDEX', () => {
    expect(moduleRef.get(KEY_INDEX)).toBe(index);
  });

  describe('group commit', () => {
    const db = () => (moduleRef.get(DataSource).driver as unknown as { databaseConnection: import('better-sqlite3').Database }).databaseConnection;
    const outcome = (promise: Promise<unknown>) =>
      promise.then(
        () => 'ok',
        (error: Error) => error.message,
      );

    it('applies the changes of a group in the order they were queued', async () => {
      // Three writers and the finish of one of them, queued in one turn of the event loop.
      const changes = [
        index.beginWrite(record('a'), intent('a')),
        index.beginWrite(record('b'), intent('b')),
        index.finishWrite('intent-a'),
        index.beginWrite(record('a/b'), intent('a/b')), // conflicts with 'a', queued before it
      ];
      expect(await Promise.all(changes)).toEqual([{ previous: undefined }, { previous: undefined }, undefined, { conflict: 'a' }]);
      expect((await index.pendingWrites()).map((w) => w.id)).toEqual(['intent-b']);
      expect(await index.get('a/b')).toBeUndefined();
    });

    it('rolls back and rejects only the change that failed in a group', async () => {
      db().exec(`CREATE TRIGGER fail_bad BEFORE INSERT ON write_intents WHEN NEW.key = 'bad' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`);
      const outcomes = await Promise.all([
        outcome(index.beginWrite(record('good1'), intent('good1'))),
        outcome(index.beginWrite(record('bad'), intent('bad'))),
        outcome(index.beginWrite(record('good2'), intent('good2'))),
      ]);
      expect(outcomes).toEqual(['ok', 'database error: injected failure', 'ok']);
      // The record 'bad' was stored before its intent failed: its savepoint took it back.
      expect(await index.get('bad')).toBeUndefined();
      expect((await index.pendingWrites()).map((w) => w.key).sort()).toEqual(['good1', 'good2']);
    });

    it('rolls back and rejects only the single statement that failed (no savepoint), the rest of the group commits', async () => {
      for (const key of ['gone1', 'bad', 'gone2']) {
        await index.beginWrite(record(key), intent(key));
        await index.beginDelete(key); // notes its blobs as being deleted
      }
      db().exec(`CREATE TRIGGER fail_bad BEFORE DELETE ON pending_deletes WHEN OLD.key = 'bad' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`);
      const outcomes = await Promise.all([
        outcome(index.finishDelete('gone1')),
        outcome(index.finishDelete('bad')),
        outcome(index.beginWrite(record('new'), intent('new'))),
        outcome(index.finishDelete('gone2')),
      ]);
      expect(outcomes).toEqual(['ok', 'database error: injected failure', 'ok', 'ok']);
      expect((await index.pendingDeletes()).map((d) => d.key)).toEqual(['bad']);
      expect(await index.get('new')).toBeDefined();
    });

    it('a change that makes SQLite roll the whole transaction back fails its group: no change after it commits on its own', async () => {
      // RAISE(ROLLBACK) ends the transaction as a full disk or an I/O error does.
      db().exec(`CREATE TRIGGER end_txn BEFORE INSERT ON write_intents WHEN NEW.key = 'bad' BEGIN SELECT RAISE(ROLLBACK, 'transaction rolled back'); END`);
      const outcomes = await Promise.all([
        outcome(index.beginWrite(record('before'), intent('before'))),
        outcome(index.beginWrite(record('bad'), intent('bad'))),
        outcome(index.beginWrite(record('after'), intent('after'))),
        outcome(index.finishWrite('intent-before')),
      ]);
      expect(outcomes).toEqual(Array(4).fill('database error: transaction rolled back'));
      for (const key of ['before', 'bad', 'after']) expect(await index.get(key)).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);
      await expect(index.beginWrite(record('later'), intent('later'))).resolves.toEqual({ previous: undefined });
    });

    it('rejects every change of a group whose commit fails, and keeps none of them', async () => {
      // A deferred foreign key is checked at COMMIT: a trigger makes the change of 'bad' break it.
      db().pragma('foreign_keys = ON');
      db().exec(`CREATE TABLE dangling (key TEXT REFERENCES keys (key) DEFERRABLE INITIALLY DEFERRED);
                 CREATE TRIGGER break_commit AFTER INSERT ON write_intents WHEN NEW.key = 'bad'
                 BEGIN INSERT INTO dangling (key) VALUES ('no such key'); END`);
      const outcomes = await Promise.all([
        outcome(index.beginWrite(record('good'), intent('good'))),
        outcome(index.beginWrite(record('bad'), intent('bad'))),
      ]);
      expect(outcomes).toEqual(['database error: FOREIGN KEY constraint failed', 'database error: FOREIGN KEY constraint failed']);
      expect(await index.get('good')).toBeUndefined();
      expect(await index.get('bad')).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);

      // The next group commits as usual.
      await expect(index.beginWrite(record('later'), intent('later'))).resolves.toEqual({ previous: undefined });
    });
  });
});

describe(`${SqliteKeyIndex.name}.ping (readiness)`, () => {
  let dir: string;
  let moduleRef: TestingModule;
  let index: SqliteKeyIndex;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mkv-ping-'));
    moduleRef = await compileSqliteIndex(join(dir, 'index.db'));
    index = moduleRef.get(SqliteKeyIndex);
  });

  afterEach(async () => {
    await moduleRef.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers at once while another connection holds the write lock (contention, not a fault), and leaves busy_timeout as it was', async () => {
    const other = new Database(join(dir, 'index.db'));
    other.exec('BEGIN IMMEDIATE');
    try {
      // Waiting would have held the event loop for busy_timeout (5 s) and then failed "database is locked".
      await expect(index.ping()).resolves.toBeUndefined();
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    const db = (moduleRef.get(DataSource).driver as unknown as { databaseConnection: Database.Database }).databaseConnection;
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
  });
});
