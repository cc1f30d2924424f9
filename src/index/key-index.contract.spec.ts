import { Test, TestingModule } from '@nestjs/testing';
import { InMemoryIndexModule } from '../../examples/in-memory-index/in-memory-index.module';
import { byVolume, compileSqliteIndex, countedUsage, intent, record, storeFinished, V1, V2, V3 } from '../../test/support/index-records';
import { JOB_STORE, JobStore } from '../admin/jobs/job-store';
import type { JobView, PlannedMove } from '../admin/jobs/job';
import { KEY_INDEX, KeyIndex } from './key-index';
import { DIRECT_WRITE, type KeyRecord, type KeyState } from './key-record';

/**
 * The contract of KeyIndex and JobStore (their doc comments), checked the
 * same way against the stock SQLite index and the in-memory example a team
 * copies to write its own: an index that passes here behaves as mkv's write
 * path, listings, jobs and reports expect. A store that sorts keys in
 * JavaScript's string order, lets `a` and `a/b` both in, or forgets a
 * pending delete fails here, not in production.
 */
const INDEXES: [string, () => Promise<TestingModule>][] = [
  ['SqliteIndexModule (:memory:)', () => compileSqliteIndex()],
  ['InMemoryIndexModule (examples/in-memory-index)', () => Test.createTestingModule({ imports: [InMemoryIndexModule] }).compile()],
];

describe.each(INDEXES)('KeyIndex contract: %s', (_name, compile) => {
  let moduleRef: TestingModule;
  let index: KeyIndex;

  beforeEach(async () => {
    moduleRef = await compile();
    index = moduleRef.get<KeyIndex>(KEY_INDEX);
  });

  afterEach(async () => {
    await moduleRef.close();
  });

  /** A finished record, as a completed PUT leaves it. */
  const store = (rec: KeyRecord) => storeFinished(index, rec);

  it('holds nothing when new: no record, no pending write or delete, nothing to count or scan', async () => {
    expect(await index.get('missing')).toBeUndefined();
    expect(await index.pendingWrites()).toEqual([]);
    expect(await index.pendingDeletes()).toEqual([]);
    expect(await index.count()).toBe(0);
    expect(await index.scan(undefined, 10)).toEqual([]);
  });

  describe('writes', () => {
    it('stores the record and its intent in beginWrite, and keeps only the record after finishWrite', async () => {
      const begun = record('k', { md5: 'new', size: 7 });
      expect(await index.beginWrite(begun, intent('k'))).toEqual({ previous: undefined });
      expect(await index.get('k')).toEqual(begun);
      expect(await index.pendingWrites()).toEqual([intent('k')]);

      const finished = { ...begun, volumes: [V2], updatedAt: 2000 };
      await index.finishWrite('intent-k', finished);
      expect(await index.get('k')).toEqual(finished);
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('keeps the record as beginWrite stored it when finishWrite has none', async () => {
      await index.beginWrite(record('k', { md5: 'new' }), intent('k'));
      await index.finishWrite('intent-k');
      expect(await index.get('k')).toEqual(record('k', { md5: 'new' }));
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('answers beginWrite with the previous record, and the key keeps its created time', async () => {
      const previous = record('k', { md5: 'old', createdAt: 10, updatedAt: 20 });
      await store(previous);
      expect(await index.beginWrite(record('k', { md5: 'new', createdAt: 30, updatedAt: 30 }), intent('k'))).toEqual({ previous });
      expect(await index.get('k')).toEqual(record('k', { md5: 'new', createdAt: 10, updatedAt: 30 }));
    });

    it('removes a new key and its intent in abortWrite', async () => {
      await index.beginWrite(record('k'), intent('k'));
      await index.abortWrite('intent-k', 'k', undefined);
      expect(await index.get('k')).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);
      expect(await index.count()).toBe(0);
    });

    it('puts the previous record back in abortWrite', async () => {
      const previous = record('k', { md5: 'old', size: 3, createdAt: 10, updatedAt: 20 });
      await store(previous);
      await index.beginWrite(record('k', { md5: 'new', size: 9, updatedAt: 30 }), intent('k'));
      expect((await index.get('k'))?.md5).toBe('new');
      await index.abortWrite('intent-k', 'k', previous);
      expect(await index.get('k')).toEqual(previous);
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('lists pending writes oldest first', async () => {
      await index.beginWrite(record('x'), intent('x', 'late', 3000));
      await index.beginWrite(record('y'), intent('y', 'early', 1000));
      expect((await index.pendingWrites()).map((w) => w.id)).toEqual(['early', 'late']);
    });

    // Optional methods; both indexes here have them (an index without them gets no direct writes).
    describe('a direct write (a new key written straight to its paths)', () => {
      const direct = (key: string, id = `direct-${key}`) => ({ ...intent(key, id), tempPath: DIRECT_WRITE });

      it('stores only the intent in beginDirectWrite, then the record without it in commitDirectWrite', async () => {
        expect(await index.beginDirectWrite!(direct('k'))).toBeUndefined();
        expect(await index.get('k')).toBeUndefined();
        expect(await index.pendingWrites()).toEqual([direct('k')]);

        expect(await index.commitDirectWrite!(record('k'), 'direct-k')).toBeUndefined();
        expect(await index.get('k')).toEqual(record('k'));
        expect(await index.pendingWrites()).toEqual([]);
        expect(await countedUsage(index)).toEqual(byVolume(await index.usage()));
      });

      it('drops a pending delete noted for the key in commitDirectWrite: its blobs are the new value', async () => {
        await store(record('k'));
        await index.beginDelete('k');
        await index.beginDirectWrite!(direct('k'));
        await index.commitDirectWrite!(record('k', { md5: 'new' }), 'direct-k');
        expect(await index.pendingDeletes()).toEqual([]);
      });

      it('refuses in commitDirectWrite a key that conflicts with one recorded before or since, changing nothing', async () => {
        await store(record('x'));
        await index.beginDirectWrite!(direct('x/y'));
        expect(await index.commitDirectWrite!(record('x/y'), 'direct-x/y')).toBe('x');
        expect(await index.get('x/y')).toBeUndefined();
        expect(await index.pendingWrites()).toEqual([direct('x/y')]); // the caller deletes the blobs, then aborts
        await index.abortWrite('direct-x/y', 'x/y', undefined, []);

        await index.beginDirectWrite!(direct('a/b'));
        await store(record('a'));
        expect(await index.commitDirectWrite!(record('a/b'), 'direct-a/b')).toBe('a');
        expect(await index.get('a/b')).toBeUndefined();
        expect(await index.pendingWrites()).toEqual([direct('a/b')]);
      });

      it('drops the intent in abortWrite and notes the undeleted blobs, added to a note the key has', async () => {
        await store(record('k', { volumes: [V3] }));
        await index.beginDelete('k'); // noted: V3
        await index.beginDirectWrite!(direct('k'));
        await index.abortWrite('direct-k', 'k', undefined, [V1, V3]);
        expect(await index.pendingWrites()).toEqual([]);
        expect(await index.get('k')).toBeUndefined();
        expect(await index.pendingDeletes()).toEqual([{ key: 'k', volumes: [V3, V1] }]);
        await index.finishDelete('k');
        expect(await index.pendingDeletes()).toEqual([]);
      });

      it('notes nothing in abortWrite when every blob was deleted', async () => {
        await index.beginDirectWrite!(direct('k'));
        await index.abortWrite('direct-k', 'k', undefined, []);
        expect(await index.pendingWrites()).toEqual([]);
        expect(await index.pendingDeletes()).toEqual([]);
      });
    });

    it('keeps an empty volume list as empty', async () => {
      await store(record('k', { volumes: [] }));
      expect(await index.get('k')).toEqual(record('k', { volumes: [] }));
    });

    it('hands out copies: changing a record it returned or was given does not change the index', async () => {
      const given = record('k');
      await store(given);
      given.volumes.push(V3);
      const got = (await index.get('k'))!;
      got.volumes.length = 0;
      got.size = 99;
      expect(await index.get('k')).toEqual(record('k'));
    });
  });

  describe('a key cannot be both a file and a directory', () => {
    it.each<[string, string, KeyState]>([
      ['a', 'a/b', 'live'],
      ['a', 'a/b/c', 'live'],
      ['a/b', 'a', 'live'],
      ['a/b/c', 'a', 'live'],
      ['a', 'a/b', 'unlinked'],
      ['a/b', 'a', 'unlinked'],
    ])('with %j stored, refuses %j (the stored key %s) and writes nothing', async (existing, key, state) => {
      await store(record(existing, { state }));
      expect(await index.findConflict(key)).toBe(existing);
      expect(await index.beginWrite(record(key), intent(key))).toEqual({ conflict: existing });
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
      ['a/b', 'a/b'],
    ])('sees no conflict between %j and %j', async (existing, key) => {
      await store(record(existing));
      expect(await index.findConflict(key)).toBeUndefined();
      expect(await index.beginWrite(record(key, { md5: 'new' }), intent(key))).toEqual({ previous: existing === key ? record(existing) : undefined });
      expect((await index.get(key))?.md5).toBe('new');
    });

    it('lets only the first of two conflicting writes begun at once in', async () => {
      const [first, second] = await Promise.all([index.beginWrite(record('a'), intent('a')), index.beginWrite(record('a/b'), intent('a/b'))]);
      expect(first).toEqual({ previous: undefined });
      expect(second).toEqual({ conflict: 'a' });
      expect((await index.scan(undefined, 10)).map((r) => r.key)).toEqual(['a']);
    });
  });

  describe('list', () => {
    const list = (options: { prefix?: string; start?: string; limit?: number; state?: KeyState }) =>
      index.list({ prefix: '', limit: 100, state: 'live', ...options });

    it('orders keys by the bytes of their UTF-8, not by JavaScript string order', async () => {
      // JavaScript's sort (UTF-16 code units) would put U+1F600 before U+FFFF.
      for (const key of ['b', 'a\u{1F600}', 'a\uFFFF', 'aé', 'a0', 'a/b', 'a.b', 'B', 'caf\u00e9', '日本/語']) await store(record(key));
      expect(await list({})).toEqual(['B', 'a.b', 'a/b', 'a0', 'aé', 'a\uFFFF', 'a\u{1F600}', 'b', 'caf\u00e9', '日本/語']);
      expect(await list({ prefix: 'a' })).toEqual(['a.b', 'a/b', 'a0', 'aé', 'a\uFFFF', 'a\u{1F600}']);
    });

    it('returns only the keys under the prefix', async () => {
      for (const key of ['a/b', 'a/c', 'a0', 'a.', 'ab', 'b/a', '`', 'a\u{10FFFE}', 'a\u{10FFFF}', 'a\u{10FFFF}x']) await store(record(key));
      expect(await list({ prefix: 'a/' })).toEqual(['a/b', 'a/c']);
      expect(await list({ prefix: 'a' })).toEqual(['a.', 'a/b', 'a/c', 'a0', 'ab', 'a\u{10FFFE}', 'a\u{10FFFF}', 'a\u{10FFFF}x']);
      expect(await list({ prefix: 'a\u{10FFFF}' })).toEqual(['a\u{10FFFF}', 'a\u{10FFFF}x']);
      expect(await list({ prefix: 'c' })).toEqual([]);
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
      for (const key of ['\uFFFFx', '\u{1F600}z']) await store(record(key));
      expect(await list({ prefix: '\uFFFF', start: '\u{1F600}' })).toEqual([]);
      expect(await list({ start: '\u{1F600}' })).toEqual(['\u{1F600}z']);
    });

    it('lists only keys in the requested state', async () => {
      await store(record('live-1'));
      await store(record('gone-1', { state: 'unlinked' }));
      await store(record('live-2'));
      await index.setState('live-2', 'unlinked', 2000);
      expect(await list({})).toEqual(['live-1']);
      expect(await list({ state: 'unlinked' })).toEqual(['gone-1', 'live-2']);
      expect(await index.get('live-2')).toEqual(record('live-2', { state: 'unlinked', updatedAt: 2000 }));
    });

    it('returns at most limit + 1 keys, so the caller knows there is a next page', async () => {
      for (const key of ['k1', 'k2', 'k3', 'k4', 'k5']) await store(record(key));
      expect(await list({ limit: 2 })).toEqual(['k1', 'k2', 'k3']);
      expect(await list({ limit: 2, start: 'k3' })).toEqual(['k3', 'k4', 'k5']);
      expect(await list({ limit: 5 })).toHaveLength(5);
    });
  });

  describe('scan, count and setVolumes', () => {
    beforeEach(async () => {
      for (const key of ['b', 'a\u{1F600}', 'a\uFFFF', 'aé', 'a0', 'a/b', 'a.b', 'B']) await store(record(key));
      await store(record('gone', { state: 'unlinked', size: 9 }));
    });

    it('scans records of every state in byte order', async () => {
      const page = await index.scan(undefined, 100);
      expect(page.map((r) => r.key)).toEqual(['B', 'a.b', 'a/b', 'a0', 'aé', 'a\uFFFF', 'a\u{1F600}', 'b', 'gone']);
      expect(page[8]).toEqual(record('gone', { state: 'unlinked', size: 9 }));
      expect(page[0]).toEqual(record('B'));
    });

    it('scans after `after`, exclusive, up to limit', async () => {
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

    it('changes only where the replicas are with setVolumes (not the state or times), takes an empty list, and creates no key', async () => {
      await index.setVolumes('b', [V3, V1]);
      await index.setVolumes('gone', [V3]);
      await index.setVolumes('a0', []);
      await index.setVolumes('missing', [V1]);
      expect(await index.get('b')).toEqual(record('b', { volumes: [V3, V1] }));
      expect(await index.get('gone')).toEqual(record('gone', { volumes: [V3], state: 'unlinked', size: 9 }));
      expect(await index.get('a0')).toEqual(record('a0', { volumes: [] }));
      expect(await index.get('a/b')).toEqual(record('a/b'));
      expect(await index.get('missing')).toBeUndefined();
      expect(await index.count()).toBe(9);
    });
  });

  describe('deletes', () => {
    it('answers beginDelete with the record it removed, and notes its blobs until finishDelete', async () => {
      await store(record('a/b'));
      await store(record('a/c', { volumes: [V3] }));
      expect(await index.beginDelete('a/b')).toEqual(record('a/b'));
      expect(await index.get('a/b')).toBeUndefined();
      expect(await index.get('a/c')).toEqual(record('a/c', { volumes: [V3] }));
      expect(await index.pendingDeletes()).toEqual([{ key: 'a/b', volumes: [V1, V2] }]);
      await index.finishDelete('a/b');
      expect(await index.pendingDeletes()).toEqual([]);
      expect(await index.beginDelete('a/b')).toBeUndefined();
    });

    it('leaves a live key alone with unlessLive, and deletes an unlinked one', async () => {
      await store(record('live'));
      await store(record('gone', { state: 'unlinked' }));
      expect(await index.beginDelete('live', { unlessLive: true })).toEqual(record('live'));
      expect(await index.get('live')).toEqual(record('live'));
      expect(await index.pendingDeletes()).toEqual([]);
      expect(await index.beginDelete('gone', { unlessLive: true })).toEqual(record('gone', { state: 'unlinked' }));
      expect(await index.get('gone')).toBeUndefined();
      expect(await index.pendingDeletes()).toEqual([{ key: 'gone', volumes: [V1, V2] }]);
    });

    it('drops the note of a pending delete when the key is written again, so the new blobs are never deleted', async () => {
      await store(record('k'));
      await index.beginDelete('k');
      await store(record('k', { volumes: [V3] }));
      expect(await index.pendingDeletes()).toEqual([]);
      expect(await index.get('k')).toEqual(record('k', { volumes: [V3] }));
    });
  });

  describe('usage', () => {
    const usage = async () => byVolume(await index.usage());

    it('is zero for an empty index', async () => {
      expect(await index.usage()).toEqual({ keys: 0, bytes: 0, volumes: [] });
    });

    it('follows every kind of change: writes, overwrites, aborts, setVolumes, unlinks and deletes', async () => {
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
      expect(await index.beginWrite(record('a', { size: 3 }), intent('a', 'again'))).toEqual({ previous: record('a', { volumes: [V3, V1], size: 50 }) });
      await index.abortWrite('again', 'a', record('a', { volumes: [V3, V1], size: 50 }));
      await index.beginDelete('c');
      expect(await usage()).toEqual(await countedUsage(index));
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

  it('answers ping', async () => {
    await expect(index.ping()).resolves.toBeUndefined();
  });
});

function job(id: string, createdAt: string, overrides: Partial<JobView> = {}): JobView {
  return {
    id,
    kind: 'rebalance',
    dryRun: false,
    state: 'succeeded',
    progress: { phase: 'done', done: 1, total: 1, percent: 100 },
    counters: { scanned: 1, planned: 0, moved: 1, skipped: 0, failed: 0, bytes: 5 },
    errors: [],
    createdAt,
    startedAt: createdAt,
    finishedAt: createdAt,
    ...overrides,
  };
}

function move(key: string): PlannedMove {
  return { key, size: 1, from: V1, to: [V3], drop: [V2] };
}

describe.each(INDEXES)('JobStore contract: %s', (_name, compile) => {
  let moduleRef: TestingModule;
  let store: JobStore;

  beforeEach(async () => {
    moduleRef = await compile();
    store = moduleRef.get<JobStore>(JOB_STORE);
  });

  afterEach(async () => {
    await moduleRef.close();
  });

  it('saves, loads and replaces a job, and lists the newest first up to limit', async () => {
    await store.save(job('old', '2026-01-01T00:00:00.000Z'));
    await store.save(job('new', '2026-01-03T00:00:00.000Z', { state: 'running', finishedAt: null }));
    await store.save(job('mid', '2026-01-02T00:00:00.000Z'));
    expect(await store.load('new')).toEqual(job('new', '2026-01-03T00:00:00.000Z', { state: 'running', finishedAt: null }));
    expect(await store.load('missing')).toBeUndefined();
    expect((await store.recent(2)).map((j) => j.id)).toEqual(['new', 'mid']);

    await store.save(job('new', '2026-01-03T00:00:00.000Z'));
    expect((await store.load('new'))?.state).toBe('succeeded');
    expect(await store.recent(10)).toHaveLength(3);
  });

  it('marks the jobs a stopped server left queued or running as interrupted', async () => {
    await store.save(job('queued', '2026-01-01T00:00:00.000Z', { state: 'queued', finishedAt: null }));
    await store.save(job('running', '2026-01-02T00:00:00.000Z', { state: 'running', finishedAt: null }));
    await store.save(job('done', '2026-01-03T00:00:00.000Z'));
    const now = new Date('2026-02-01T00:00:00.000Z');
    expect(await store.markInterrupted(now)).toBe(2);
    expect(await store.load('running')).toEqual(job('running', '2026-01-02T00:00:00.000Z', { state: 'interrupted', finishedAt: now.toISOString() }));
    expect((await store.load('queued'))?.state).toBe('interrupted');
    expect(await store.load('done')).toEqual(job('done', '2026-01-03T00:00:00.000Z'));
  });

  it('pages a plan in seq order after `after`', async () => {
    await store.save(job('dry', '2026-01-01T00:00:00.000Z', { dryRun: true }));
    await store.appendPlan('dry', 1, [move('a'), move('b')]);
    await store.appendPlan('dry', 3, [move('c')]);
    await store.appendPlan('dry', 4, []);
    expect(await store.planPage('dry', 0, 2)).toEqual([
      { seq: 1, move: move('a') },
      { seq: 2, move: move('b') },
    ]);
    expect(await store.planPage('dry', 2, 10)).toEqual([{ seq: 3, move: move('c') }]);
    expect(await store.planPage('dry', 3, 10)).toEqual([]);
    expect(await store.planPage('other', 0, 10)).toEqual([]);
  });
});
