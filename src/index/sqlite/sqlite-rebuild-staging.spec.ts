import { TestingModule } from '@nestjs/testing';
import { DataSource } from 'typeorm';
import { byVolume, compileSqliteIndex, countedUsage, record, storeFinished, V1, V2, V3 } from '../../../test/support/index-records';
import { IndexUsage, KEY_INDEX, KeyIndex } from '../key-index';
import { DIRECT_WRITE, type KeyRecord } from '../key-record';
import { REBUILD_STAGING, RebuildStaging } from '../rebuild-staging';
import { SqliteRebuildStaging } from './sqlite-rebuild-staging';

describe(SqliteRebuildStaging.name, () => {
  let moduleRef: TestingModule;
  let index: KeyIndex;
  let staging: RebuildStaging;

  beforeEach(async () => {
    moduleRef = await compileSqliteIndex();
    index = moduleRef.get<KeyIndex>(KEY_INDEX);
    staging = moduleRef.get<RebuildStaging>(REBUILD_STAGING);
  });

  afterEach(async () => {
    await moduleRef.close();
  });

  const store = (rec: KeyRecord) => storeFinished(index, rec);

  it('is the provider behind REBUILD_STAGING', () => {
    expect(staging).toBeInstanceOf(SqliteRebuildStaging);
  });

  /** The serving index's tables and triggers, as the migrations leave them. */
  const SERVING_SCHEMA = ['index_usage', 'jobs', 'job_plan', 'keys', 'pending_deletes', 'usage_on_delete', 'usage_on_insert', 'usage_on_update', 'write_intents'].sort();

  /** Tables and triggers the database holds besides TypeORM's own. */
  async function schemaObjects(): Promise<string[]> {
    const rows: { name: string }[] = await moduleRef
      .get(DataSource)
      .query(`SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') AND name NOT LIKE 'sqlite_%' ORDER BY name`);
    return rows.map((row) => row.name).filter((name) => !['migrations', 'typeorm_metadata'].includes(name));
  }

  async function allStaged(): Promise<KeyRecord[]> {
    return staging.scanStaged(undefined, 1000);
  }

  const counted = () => countedUsage(index);

  async function usage(): Promise<IndexUsage> {
    return byVolume(await index.usage());
  }

  describe('usage', () => {
    it('is counted afresh by a rebuild\'s swap, and followed again after it', async () => {
      await store(record('gone', { volumes: [V1], size: 100 }));
      await staging.beginRebuild();
      await staging.stageFound([
        { key: 'found', volume: V2, size: 4, mtime: 3000 },
        { key: 'found', volume: V3, size: 4, mtime: 3000 },
      ]);
      await staging.swapRebuild();
      expect(await usage()).toEqual({
        keys: 1,
        bytes: 4,
        volumes: [
          { volume: V2, keys: 1, bytes: 4 },
          { volume: V3, keys: 1, bytes: 4 },
        ],
      });
      await store(record('later', { volumes: [V1], size: 6 }));
      expect(await usage()).toEqual(await counted());
    });
  });

  describe('staging', () => {
    beforeEach(() => staging.beginRebuild());

    it('starts empty and leaves the serving index alone', async () => {
      await store(record('k'));
      await staging.stageFound([{ key: 'found', volume: V1, size: 3, mtime: 500 }]);
      expect(await index.get('found')).toBeUndefined();
      expect((await index.scan(undefined, 10)).map((r) => r.key)).toEqual(['k']);
      expect((await allStaged()).map((r) => r.key)).toEqual(['found']);
    });

    it('stages a found blob as a live key with no MD5, created and updated at its mtime', async () => {
      await staging.stageFound([{ key: 'a/b', volume: V2, size: 7, mtime: 1234 }]);
      expect(await allStaged()).toEqual([
        { key: 'a/b', volumes: [V2], size: 7, md5: '', state: 'live', createdAt: 1234, updatedAt: 1234 },
      ]);
    });

    it('appends the volumes of replicas with the same size, in the order found', async () => {
      await staging.stageFound([
        { key: 'k', volume: V2, size: 5, mtime: 300 },
        { key: 'other', volume: V1, size: 1, mtime: 1 },
      ]);
      await staging.stageFound([
        { key: 'k', volume: V3, size: 5, mtime: 100 },
        { key: 'k', volume: V1, size: 5, mtime: 200 },
      ]);
      expect(await allStaged()).toEqual([
        { key: 'k', volumes: [V2, V3, V1], size: 5, md5: '', state: 'live', createdAt: 100, updatedAt: 300 },
        { key: 'other', volumes: [V1], size: 1, md5: '', state: 'live', createdAt: 1, updatedAt: 1 },
      ]);
    });

    it('keeps the newest replica when replicas disagree on the size', async () => {
      await staging.stageFound([
        { key: 'newer-last', volume: V1, size: 5, mtime: 100 },
        { key: 'newer-last', volume: V2, size: 5, mtime: 100 },
        { key: 'newer-last', volume: V3, size: 8, mtime: 200 },
        { key: 'newer-first', volume: V1, size: 8, mtime: 200 },
        { key: 'newer-first', volume: V2, size: 5, mtime: 100 },
        { key: 'newer-first', volume: V3, size: 8, mtime: 150 },
      ]);
      const [newerFirst, newerLast] = await allStaged();
      expect(newerLast).toMatchObject({ key: 'newer-last', volumes: [V3], size: 8, updatedAt: 200 });
      expect(newerFirst).toMatchObject({ key: 'newer-first', volumes: [V1, V3], size: 8, updatedAt: 200 });
    });

    it('accepts an empty batch', async () => {
      await staging.stageFound([]);
      expect(await allStaged()).toEqual([]);
    });

    it('pages the staged keys in byte order with scanStaged', async () => {
      const keys = ['b', 'a\u{1F600}', 'a\uFFFF', 'a/b', 'a0'];
      await staging.stageFound(keys.map((key) => ({ key, volume: V1, size: 1, mtime: 1 })));
      expect((await staging.scanStaged(undefined, 10)).map((r) => r.key)).toEqual(['a/b', 'a0', 'a\uFFFF', 'a\u{1F600}', 'b']);
      expect((await staging.scanStaged(undefined, 2)).map((r) => r.key)).toEqual(['a/b', 'a0']);
      expect((await staging.scanStaged('a0', 2)).map((r) => r.key)).toEqual(['a\uFFFF', 'a\u{1F600}']);
      expect(await staging.scanStaged('b', 2)).toEqual([]);
    });

    it('reorders staged volumes with setStagedVolumes and nothing else', async () => {
      await staging.stageFound([
        { key: 'k', volume: V1, size: 5, mtime: 1 },
        { key: 'k', volume: V2, size: 5, mtime: 1 },
        { key: 'l', volume: V1, size: 5, mtime: 1 },
      ]);
      await store(record('k', { volumes: [V1] }));
      await staging.setStagedVolumes([{ key: 'k', volumes: [V2, V1] }]);
      await staging.setStagedVolumes([]);
      expect((await allStaged()).map((r) => [r.key, r.volumes])).toEqual([
        ['k', [V2, V1]],
        ['l', [V1]],
      ]);
      expect((await index.get('k'))?.volumes).toEqual([V1]);
    });

    it('starts over when a rebuild begins again', async () => {
      await staging.stageFound([{ key: 'left-over', volume: V1, size: 1, mtime: 1 }]);
      await staging.beginRebuild();
      expect(await allStaged()).toEqual([]);
    });
  });

  describe('swapRebuild', () => {
    const startedAt = 10_000;

    it('replaces the serving rows with the staged ones and returns how many there are', async () => {
      await store(record('vanished', { updatedAt: 5000 }));
      await store(record('kept', { volumes: [V1], updatedAt: 5000 }));
      await staging.beginRebuild();
      await staging.stageFound([
        { key: 'kept', volume: V2, size: 5, mtime: 3000 },
        { key: 'kept', volume: V1, size: 5, mtime: 3000 },
        { key: 'found', volume: V3, size: 4, mtime: 4000 },
      ]);

      expect(await staging.swapRebuild()).toBe(2);
      expect(await index.get('vanished')).toBeUndefined();
      // The copy on V2, which the old index did not list, is not taken on its size alone.
      expect(await index.get('kept')).toMatchObject({ volumes: [V1], size: 5 });
      expect(await index.get('found')).toEqual({ key: 'found', volumes: [V3], size: 4, md5: '', state: 'live', createdAt: 4000, updatedAt: 4000 });
      expect(await index.count()).toBe(2);
      expect(await schemaObjects()).toEqual(SERVING_SCHEMA);
    });

    it('sets aside copies on volumes the old index did not list, and adopts them only where no known replica was found, without the MD5', async () => {
      await store(record('known', { volumes: [V1, V2], md5: 'known-md5' }));
      await store(record('lost', { volumes: [V1, V2], md5: 'lost-md5' }));
      await staging.beginRebuild();
      const strays = await staging.stageFound([
        { key: 'known', volume: V1, size: 5, mtime: 3000 },
        { key: 'known', volume: V3, size: 5, mtime: 3000 },
        { key: 'lost', volume: V3, size: 5, mtime: 3000 },
        { key: 'new', volume: V3, size: 4, mtime: 3000 },
      ]);
      expect(strays.map((blob) => `${blob.key} ${blob.volume}`)).toEqual([`known ${V3}`, `lost ${V3}`]);
      expect(await staging.adoptStrays()).toEqual([{ key: 'lost', volumes: [V3] }]);
      await staging.swapRebuild();

      expect(await index.get('known')).toMatchObject({ volumes: [V1], md5: 'known-md5' });
      expect(await index.get('lost')).toMatchObject({ volumes: [V3], size: 5, md5: '' });
      expect(await index.get('new')).toMatchObject({ volumes: [V3], md5: '' });
      expect(await schemaObjects()).toEqual(SERVING_SCHEMA);
    });

    it('carries state and created time from the old rows, and the MD5 only where the size agrees', async () => {
      await store(record('same-size', { size: 5, md5: 'old-md5', state: 'unlinked', createdAt: 100, updatedAt: 5000 }));
      await store(record('other-size', { size: 5, md5: 'old-md5', state: 'unlinked', createdAt: 100, updatedAt: 5000 }));
      await staging.beginRebuild();
      await staging.stageFound([
        { key: 'same-size', volume: V1, size: 5, mtime: 3000 },
        { key: 'other-size', volume: V1, size: 6, mtime: 3000 },
      ]);
      await staging.swapRebuild();

      expect(await index.get('same-size')).toEqual({
        key: 'same-size',
        volumes: [V1],
        size: 5,
        md5: 'old-md5',
        state: 'unlinked',
        createdAt: 100,
        updatedAt: 3000,
      });
      expect(await index.get('other-size')).toEqual({
        key: 'other-size',
        volumes: [V1],
        size: 6,
        md5: '',
        state: 'unlinked',
        createdAt: 100,
        updatedAt: 3000,
      });
    });

    it('keeps the rows written since the rebuild started over what it found', async () => {
      await store(record('before', { md5: 'old', updatedAt: 5000 }));
      await staging.beginRebuild();
      await staging.stageFound([
        { key: 'rewritten', volume: V1, size: 5, mtime: 3000 },
        { key: 'before', volume: V1, size: 5, mtime: 3000 },
        { key: 'unlinked-since', volume: V1, size: 5, mtime: 3000 },
      ]);
      const rewritten = record('rewritten', { volumes: [V2, V3], size: 11, md5: 'new', createdAt: 10_500, updatedAt: 10_500 });
      await store(rewritten);
      const written = record('written-during', { updatedAt: startedAt });
      await store(written);
      await store(record('unlinked-since', { updatedAt: 4000 }));
      await index.setState('unlinked-since', 'unlinked', 12_000);

      expect(await staging.swapRebuild()).toBe(4);
      expect(await index.get('rewritten')).toEqual(rewritten);
      expect(await index.get('written-during')).toEqual(written);
      expect(await index.get('unlinked-since')).toEqual(record('unlinked-since', { state: 'unlinked', updatedAt: 12_000 }));
      expect(await index.get('before')).toMatchObject({ volumes: [V1], md5: 'old' });
    });

    // Failure: a new key's direct write fails during a rebuild whose walk listed
    // its blob before the blob was deleted. No row of the key ever existed, so
    // only the intent's drop tells the swap; without it the key was indexed
    // with no blob behind it.
    it('leaves out a key whose direct write failed after the walk found its blob', async () => {
      await staging.beginRebuild();
      await index.beginDirectWrite!({ id: 'direct', key: 'failed', tempPath: DIRECT_WRITE, volumes: [V1, V2], createdAt: 5000 });
      await staging.stageFound([{ key: 'failed', volume: V1, size: 5, mtime: 5000 }]);
      await index.abortWrite('direct', 'failed', undefined, []); // its blobs deleted

      await staging.swapRebuild();
      expect(await index.get('failed')).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('drops the keys deleted after the rebuild began, even when they were found', async () => {
      await store(record('deleted', { updatedAt: 5000 }));
      await store(record('deleted-then-written', { updatedAt: 5000 }));
      await store(record('stays', { updatedAt: 5000 }));
      await staging.beginRebuild();
      await staging.stageFound(
        ['deleted', 'deleted-then-written', 'stays'].map((key) => ({ key, volume: V1, size: 5, mtime: 3000 })),
      );
      await index.beginDelete('deleted');
      await index.beginDelete('deleted-then-written');
      const again = record('deleted-then-written', { md5: 'again', updatedAt: 11_000 });
      await store(again);

      expect(await staging.swapRebuild()).toBe(2);
      expect(await index.get('deleted')).toBeUndefined();
      expect(await index.get('deleted-then-written')).toEqual(again);
      expect(await index.get('stays')).toBeDefined();
    });

    it('does not count deletes finished before the rebuild began', async () => {
      await store(record('k', { updatedAt: 5000 }));
      await index.beginDelete('k');
      await index.finishDelete('k');
      await staging.beginRebuild();
      await staging.stageFound([{ key: 'k', volume: V1, size: 5, mtime: 3000 }]);
      expect(await staging.swapRebuild()).toBe(1);
      expect(await index.get('k')).toMatchObject({ volumes: [V1], md5: '' });
    });

    it('leaves out a key whose blob deletes are still pending, and a later PUT of it clears that', async () => {
      await store(record('deleting', { updatedAt: 5000 }));
      await store(record('deleted-then-put', { updatedAt: 5000 }));
      await index.beginDelete('deleting'); // a volume was down: its blob is still there
      await index.beginDelete('deleted-then-put');
      expect(await index.pendingDeletes()).toEqual(
        expect.arrayContaining([
          { key: 'deleting', volumes: [V1, V2] },
          { key: 'deleted-then-put', volumes: [V1, V2] },
        ]),
      );
      const again = record('deleted-then-put', { md5: 'again' });
      await store(again);
      expect((await index.pendingDeletes()).map((p) => p.key)).toEqual(['deleting']);
      await staging.beginRebuild();
      await staging.stageFound(['deleting', 'deleted-then-put'].map((key) => ({ key, volume: V1, size: 5, mtime: 3000 })));
      expect(await staging.swapRebuild()).toBe(1);
      expect(await index.get('deleting')).toBeUndefined();
      // Put before the rebuild began: what the walk found, with the MD5 carried over.
      expect(await index.get('deleted-then-put')).toMatchObject({ md5: 'again', volumes: [V1] });
    });

    it('leaves the serving statements and the listing working on the new table', async () => {
      await store(record('old', { updatedAt: 5000 }));
      expect(await index.get('old')).toBeDefined(); // prepared before the swap
      await staging.beginRebuild();
      await staging.stageFound([
        { key: 'a/1', volume: V1, size: 5, mtime: 3000 },
        { key: 'a/2', volume: V2, size: 5, mtime: 3000 },
      ]);
      await staging.swapRebuild();

      expect(await index.get('old')).toBeUndefined();
      expect(await index.get('a/1')).toMatchObject({ volumes: [V1] });
      expect(await index.list({ prefix: 'a/', limit: 10, state: 'live' })).toEqual(['a/1', 'a/2']);
      expect(await index.findConflict('a')).toBe('a/1');
      expect((await index.scan(undefined, 10)).map((r) => r.key)).toEqual(['a/1', 'a/2']);
      expect(await index.count()).toBe(2);

      await store(record('b'));
      await index.setState('a/1', 'unlinked', 20_000);
      await index.setVolumes('a/2', [V3]);
      await index.beginDelete('b'); // the delete-tracking trigger is gone with its table
      expect(await index.get('a/1')).toMatchObject({ state: 'unlinked' });
      expect(await index.get('a/2')).toMatchObject({ volumes: [V3] });
      expect(await index.get('b')).toBeUndefined();
      expect(await index.list({ prefix: '', limit: 10, state: 'unlinked' })).toEqual(['a/1']);
    });

    it('can rebuild again after a swap', async () => {
      await staging.beginRebuild();
      await staging.stageFound([{ key: 'first', volume: V1, size: 5, mtime: 3000 }]);
      await staging.swapRebuild();
      await staging.beginRebuild();
      await staging.stageFound([{ key: 'second', volume: V2, size: 5, mtime: 3000 }]);
      expect(await staging.swapRebuild()).toBe(1);
      expect((await index.scan(undefined, 10)).map((r) => r.key)).toEqual(['second']);
    });
  });

  describe('abandonRebuild', () => {
    it('drops the staging and leaves the serving index untouched', async () => {
      await store(record('k'));
      await staging.beginRebuild();
      await staging.stageFound([{ key: 'found', volume: V1, size: 3, mtime: 1 }]);
      await index.beginDelete('k');
      await store(record('l'));
      await staging.abandonRebuild();

      expect(await schemaObjects()).toEqual(SERVING_SCHEMA);
      expect((await index.scan(undefined, 10)).map((r) => r.key)).toEqual(['l']);
      expect(await index.get('found')).toBeUndefined();
      await store(record('m'));
      await index.beginDelete('m'); // no trigger left behind
      expect(await index.count()).toBe(1);
    });

    it('is harmless without a rebuild, and a later rebuild starts from nothing', async () => {
      await staging.abandonRebuild();
      await staging.beginRebuild();
      await staging.stageFound([{ key: 'stale', volume: V1, size: 3, mtime: 1 }]);
      await staging.abandonRebuild();

      await staging.beginRebuild();
      expect(await allStaged()).toEqual([]);
      await staging.stageFound([{ key: 'fresh', volume: V1, size: 3, mtime: 1 }]);
      expect(await staging.swapRebuild()).toBe(1);
      expect((await index.scan(undefined, 10)).map((r) => r.key)).toEqual(['fresh']);
    });
  });
});
