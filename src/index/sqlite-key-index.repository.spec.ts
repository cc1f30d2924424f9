import { Test, TestingModule } from '@nestjs/testing';
import { ConfigModule } from '../config/config.module';
import { loadConfig } from '../config/load-config';
import { IndexModule } from './index.module';
import { KEY_INDEX, KeyIndex } from './key-index';
import type { KeyRecord, KeyState, WriteIntent } from './key-record';
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

const V1 = 'http://a:1';
const V2 = 'http://b:2';

function record(key: string, overrides: Partial<KeyRecord> = {}): KeyRecord {
  return { key, volumes: [V1, V2], size: 5, md5: '5d41402abc4b2a76b9719d911017c592', state: 'live', createdAt: 1000, updatedAt: 1000, ...overrides };
}

function intent(key: string, id = `intent-${key}`, createdAt = 1000): WriteIntent {
  return { id, key, tempPath: `/.mkv-tmp/${id}`, volumes: [V1, V2], createdAt };
}

describe(SqliteKeyIndex.name, () => {
  let moduleRef: TestingModule;
  let index: KeyIndex;

  beforeEach(async () => {
    const config = loadConfig({ db: ':memory:', volumes: 'a:1,b:2,c:3', replicas: 2 });
    moduleRef = await Test.createTestingModule({ imports: [ConfigModule.forRoot(config), IndexModule] }).compile();
    index = moduleRef.get<KeyIndex>(KEY_INDEX);
  });

  afterEach(async () => {
    await moduleRef.close();
  });

  /** Stores a finished record, as a completed PUT leaves it. */
  async function store(rec: KeyRecord): Promise<void> {
    const id = `seed-${rec.key}`;
    expect(await index.beginWrite(rec, intent(rec.key, id))).toBeUndefined();
    await index.finishWrite(id, rec);
  }

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
      expect(await index.beginWrite(begun, intent('k'))).toBeUndefined();
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
      expect(await index.beginWrite(record(key), intent(key))).toBe(existing);
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
      expect(await index.beginWrite(record(key), intent(key))).toBeUndefined();
    });

    it('lets a key be overwritten', async () => {
      await store(record('a/b'));
      expect(await index.beginWrite(record('a/b', { md5: 'new' }), intent('a/b'))).toBeUndefined();
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
    await index.delete('a/b');
    expect(await index.get('a/b')).toBeUndefined();
    expect(await index.get('a/c')).toEqual(record('a/c'));
    await expect(index.delete('a/b')).resolves.toBeUndefined();
  });
});
