import { TestingModule } from '@nestjs/testing';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { byVolume, compileSqliteIndex, countedUsage, intent, record, storeFinished, V1, V2, V3 } from '../../../test/support/index-records';
import { IndexUsage } from '../key-index';
import type { KeyRecord, KeyState } from '../key-record';
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

  const store = (rec: KeyRecord) => storeFinished(index, rec);

  it('is the provider behind KEY_INDEX', () => {
    expect(index).toBeInstanceOf(SqliteKeyIndex);
  });

  it('returns undefined for a key it does not hold', async () => {
    expect(await index.get('missing')).toBeUndefined();
    expect(await index.pendingWrites()).toEqual([]);
  });

  describe('write round trip', () => {
    it('records the value and the intent in beginWrite, then keeps only the record after finishWrite', async () => {
      const begun = record('k', { md5: 'new', size: 7 });
      expect((await index.beginWrite(begun, intent('k'))).conflict).toBeUndefined();
      expect(await index.get('k')).toEqual(begun);
      expect(await index.pendingWrites()).toEqual([intent('k')]);

      const finished = { ...begun, volumes: [V2], updatedAt: 2000 };
      await index.finishWrite('intent-k', finished);
      expect(await index.get('k')).toEqual(finished);
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('lists pending writes oldest first', async () => {
      await index.beginWrite(record('x'), intent('x', 'late', 3000));
      await index.beginWrite(record('y'), intent('y', 'early', 1000));
      expect((await index.pendingWrites()).map((w) => w.id)).toEqual(['early', 'late']);
    });

    it('removes a new key and its intent in abortWrite without a previous record', async () => {
      await index.beginWrite(record('k'), intent('k'));
      await index.abortWrite('intent-k', 'k', undefined);
      expect(await index.get('k')).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('puts the previous record back in abortWrite', async () => {
      const previous = record('k', { md5: 'old', size: 3, createdAt: 10, updatedAt: 20 });
      await store(previous);
      await index.beginWrite(record('k', { md5: 'new', size: 9, createdAt: 10, updatedAt: 30 }), intent('k'));
      expect((await index.get('k'))?.md5).toBe('new');

      await index.abortWrite('intent-k', 'k', previous);
      expect(await index.get('k')).toEqual(previous);
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('answers beginWrite with the previous record, and keeps its created time', async () => {
      const previous = record('k', { md5: 'old', createdAt: 10, updatedAt: 20 });
      await store(previous);
      expect(await index.beginWrite(record('k', { md5: 'new', createdAt: 30, updatedAt: 30 }), intent('k'))).toEqual({ previous });
      expect(await index.get('k')).toEqual(record('k', { md5: 'new', createdAt: 10, updatedAt: 30 }));
    });

    it('keeps the record as beginWrite stored it when finishWrite has none', async () => {
      const begun = record('k', { md5: 'new' });
      await index.beginWrite(begun, intent('k'));
      await index.finishWrite('intent-k');
      expect(await index.get('k')).toEqual(begun);
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('keeps an empty volume list as empty', async () => {
      await store(record('k', { volumes: [] }));
      expect((await index.get('k'))?.volumes).toEqual([]);
    });
  });

  describe('conflicts between a key and a key below it', () => {
    it.each<[string, string, KeyState]>([
      ['a', 'a/b', 'live'],
      ['a', 'a/b/c', 'live'],
      ['a/b', 'a', 'live'],
      ['a/b/c', 'a', 'live'],
      ['a', 'a/b', 'unlinked'],
      ['a/b', 'a', 'unlinked'],
    ])('refuses %j after %j (%s) and writes nothing', async (existing, key, state) => {
      await store(record(existing, { state }));
      expect(await index.findConflict(key)).toBe(existing);
      expect((await index.beginWrite(record(key), intent(key))).conflict).toBe(existing);
      expect(await index.get(key)).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);
      expect(await index.get(existing)).toEqual(record(existing, { state }));
    });

    it.each([
      ['a', 'ab'],
      ['a', 'a0'],
      ['a', 'a.b'],
      ['a/b', 'a/c'],
      ['ab/c', 'a'],
    ])('does not see a conflict between %j and %j', async (existing, key) => {
      await store(record(existing));
      expect(await index.findConflict(key)).toBeUndefined();
      expect((await index.beginWrite(record(key), intent(key))).conflict).toBeUndefined();
    });

    it('lets a key be overwritten', async () => {
      await store(record('a/b'));
      expect((await index.beginWrite(record('a/b', { md5: 'new' }), intent('a/b'))).conflict).toBeUndefined();
      expect((await index.get('a/b'))?.md5).toBe('new');
    });
  });

  describe('list', () => {
    const list = (options: { prefix?: string; start?: string; limit?: number; state?: KeyState }) =>
      index.list({ prefix: '', limit: 100, state: 'live', ...options });

    it('orders keys by their UTF-8 bytes, which is code point order', async () => {
      // JavaScript's sort (UTF-16 code units) would put U+1F600 before U+FFFF.
      for (const key of ['b', 'a\u{1F600}', 'a\uFFFF', 'aé', 'a0', 'a/b', 'a.b', 'B']) await store(record(key));
      expect(await list({})).toEqual(['B', 'a.b', 'a/b', 'a0', 'aé', 'a\uFFFF', 'a\u{1F600}', 'b']);
      expect(await list({ prefix: 'a' })).toEqual(['a.b', 'a/b', 'a0', 'aé', 'a\uFFFF', 'a\u{1F600}']);
    });

    it('returns only the keys under the prefix', async () => {
      for (const key of ['a/b', 'a/c', 'a0', 'a.', 'ab', 'b/a', '`']) await store(record(key));
      expect(await list({ prefix: 'a/' })).toEqual(['a/b', 'a/c']);
      expect(await list({ prefix: 'a' })).toEqual(['a.', 'a/b', 'a/c', 'a0', 'ab']);
      expect(await list({ prefix: 'c' })).toEqual([]);
    });

    it('lists keys under a prefix ending in U+10FFFF', async () => {
      for (const key of ['a\u{10FFFF}', 'a\u{10FFFF}x', 'a\u{10FFFE}', 'b']) await store(record(key));
      expect(await list({ prefix: 'a\u{10FFFF}' })).toEqual(['a\u{10FFFF}', 'a\u{10FFFF}x']);
    });

    it('starts at start, inclusive, within the prefix', async () => {
      for (const key of ['a/1', 'a/2', 'a/3', 'b/1']) await store(record(key));
      expect(await list({ prefix: 'a/', start: 'a/2' })).toEqual(['a/2', 'a/3']);
      expect(await list({ prefix: 'a/', start: 'a/25' })).toEqual(['a/3']);
      expect(await list({ prefix: 'a/', start: '0' })).toEqual(['a/1', 'a/2', 'a/3']);
      expect(await list({ prefix: 'a/', start: 'b' })).toEqual([]);
      expect(await list({ start: 'a/3' })).toEqual(['a/3', 'b/1']);
    });

    it('compares start in byte order, not JavaScript string order', async () => {
      // U+1F600 is after U+FFFF in UTF-8 bytes but before it in UTF-16 code units.
      for (const key of ['\uFFFFx', '\u{1F600}z']) await store(record(key));
      expect(await list({ prefix: '\uFFFF', start: '\u{1F600}' })).toEqual([]);
    });

    it('lists only keys in the requested state', async () => {
      await store(record('live-1'));
      await store(record('gone-1', { state: 'unlinked' }));
      await store(record('live-2'));
      expect(await list({})).toEqual(['live-1', 'live-2']);
      expect(await list({ state: 'unlinked' })).toEqual(['gone-1']);
    });

    it('returns at most limit + 1 keys', async () => {
      for (const key of ['k1', 'k2', 'k3', 'k4', 'k5']) await store(record(key));
      expect(await list({ limit: 2 })).toEqual(['k1', 'k2', 'k3']);
      expect(await list({ limit: 5 })).toHaveLength(5);
    });
  });

  it('changes the state and update time with setState', async () => {
    await store(record('k'));
    await index.setState('k', 'unlinked', 5000);
    expect(await index.get('k')).toEqual(record('k', { state: 'unlinked', updatedAt: 5000 }));
  });

  it('removes only the given key with delete', async () => {
    await store(record('a/b'));
    await store(record('a/c'));
    await index.beginDelete('a/b');
    expect(await index.get('a/b')).toBeUndefined();
    expect(await index.get('a/c')).toEqual(record('a/c'));
    await expect(index.beginDelete('a/b')).resolves.toBeUndefined();
  });

  it('answers beginDelete with the record it removed, and leaves a live key alone when asked', async () => {
    await store(record('live'));
    await store(record('gone', { state: 'unlinked' }));
    expect(await index.beginDelete('live', { unlessLive: true })).toEqual(record('live'));
    expect(await index.get('live')).toEqual(record('live'));
    expect(await index.pendingDeletes()).toEqual([]);
    expect(await index.beginDelete('gone', { unlessLive: true })).toEqual(record('gone', { state: 'unlinked' }));
    expect(await index.get('gone')).toBeUndefined();
    expect(await index.pendingDeletes()).toEqual([{ key: 'gone', volumes: [V1, V2] }]);
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

  describe('paging, volume updates and usage', () => {
    const counted = () => countedUsage(index);

    async function usage(): Promise<IndexUsage> {
      return byVolume(await index.usage());
    }

    describe('usage', () => {
      it('is zero for an empty index', async () => {
        expect(await index.usage()).toEqual({ keys: 0, bytes: 0, volumes: [] });
      });

      it('follows every kind of write without a pass over the keys', async () => {
        await store(record('a', { volumes: [V1, V2], size: 5 }));
        await store(record('b', { volumes: [V2, V3], size: 7 }));
        await store(record('c', { volumes: [], size: 1 }));
        expect(await usage()).toEqual({
          keys: 3,
          bytes: 13,
          volumes: [
            { volume: V1, keys: 1, bytes: 5 },
            { volume: V2, keys: 2, bytes: 12 },
            { volume: V3, keys: 1, bytes: 7 },
          ],
        });

        await store(record('a', { volumes: [V3, V1], size: 50 })); // an overwrite that moves and grows
        await index.setVolumes('b', [V1]);
        await index.setState('c', 'unlinked', 2000);
        expect(await index.beginWrite(record('d', { size: 9 }), intent('d'))).toEqual({ previous: undefined });
        await index.abortWrite('intent-d', 'd', undefined);
        expect(await index.beginWrite(record('a', { size: 3 }), intent('a', 'again'))).toEqual({ previous: expect.objectContaining({ size: 50 }) });
        await index.abortWrite('again', 'a', record('a', { volumes: [V3, V1], size: 50 }));
        await index.beginDelete('c');
        expect(await usage()).toEqual(await counted());
        expect(await usage()).toEqual({
          keys: 2,
          bytes: 57,
          volumes: [
            { volume: V1, keys: 2, bytes: 57 },
            { volume: V3, keys: 1, bytes: 50 },
          ],
        });
      });

    });

    describe('scan', () => {
      beforeEach(async () => {
        for (const key of ['b', 'a\u{1F600}', 'a\uFFFF', 'aé', 'a0', 'a/b', 'a.b', 'B']) await store(record(key));
        await store(record('gone', { state: 'unlinked', size: 9 }));
      });

      it('returns records of every state in byte order', async () => {
        const page = await index.scan(undefined, 100);
        expect(page.map((r) => r.key)).toEqual(['B', 'a.b', 'a/b', 'a0', 'aé', 'a\uFFFF', 'a\u{1F600}', 'b', 'gone']);
        expect(page[8]).toEqual(record('gone', { state: 'unlinked', size: 9 }));
        expect(page[0]).toEqual(record('B'));
      });

      it('starts after `after`, exclusive, and stops at limit', async () => {
        expect((await index.scan(undefined, 3)).map((r) => r.key)).toEqual(['B', 'a.b', 'a/b']);
        expect((await index.scan('a/b', 3)).map((r) => r.key)).toEqual(['a0', 'aé', 'a\uFFFF']);
        expect((await index.scan('a\uFFFF', 3)).map((r) => r.key)).toEqual(['a\u{1F600}', 'b', 'gone']);
        expect((await index.scan('a1', 2)).map((r) => r.key)).toEqual(['aé', 'a\uFFFF']);
        expect(await index.scan('gone', 3)).toEqual([]);
        expect(await index.scan('zzz', 3)).toEqual([]);
      });

      it('pages through every key exactly once', async () => {
        const seen: string[] = [];
        // Bounded, so a scan that repeats its `after` key fails instead of looping.
        for (let after: string | undefined, pages = 0; pages < 10; pages++) {
          const page = await index.scan(after, 2);
          if (page.length === 0) break;
          expect(page.length).toBeLessThanOrEqual(2);
          seen.push(...page.map((r) => r.key));
          after = page[page.length - 1].key;
        }
        expect(seen).toEqual((await index.scan(undefined, 100)).map((r) => r.key));
        expect(seen).toHaveLength(9);
      });

      it('counts keys of every state', async () => {
        expect(await index.count()).toBe(9);
        await index.beginDelete('b');
        expect(await index.count()).toBe(8);
      });
    });

    it('counts zero keys in an empty index', async () => {
      expect(await index.count()).toBe(0);
      expect(await index.scan(undefined, 10)).toEqual([]);
    });

    describe('setVolumes', () => {
      it('changes only where the replicas are, not the update time', async () => {
        await store(record('k', { state: 'unlinked', createdAt: 10, updatedAt: 20 }));
        await index.setVolumes('k', [V3, V1]);
        expect(await index.get('k')).toEqual(record('k', { volumes: [V3, V1], state: 'unlinked', createdAt: 10, updatedAt: 20 }));
      });

      it('accepts an empty list and leaves other keys alone', async () => {
        await store(record('k'));
        await store(record('l'));
        await index.setVolumes('k', []);
        expect((await index.get('k'))?.volumes).toEqual([]);
        expect(await index.get('l')).toEqual(record('l'));
      });

      it('does not create a key it does not hold', async () => {
        await index.setVolumes('missing', [V1]);
        expect(await index.get('missing')).toBeUndefined();
        expect(await index.count()).toBe(0);
      });
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
