import { Logger } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import { DataSource } from 'typeorm';
import { ConfigModule } from '../../config/config.module';
import { loadConfig } from '../../config/load-config';
import { PLACEMENT, Placement } from '../../hashing/placement';
import { RendezvousPlacement } from '../../hashing/rendezvous-placement.service';
import { encodeKeyPath } from '../../common/key-path';
import { blobUrl, placeKey, rankVolumes, subvolumeDir, subvolumeOf } from '../../hashing/rendezvous';
import { SqliteIndexModule } from '../../index/sqlite/sqlite-index.module';
import { KEY_INDEX, KeyIndex } from '../../index/key-index';
import type { KeyRecord } from '../../index/key-record';
import { TEMP_DIR } from '../../replicas/replica-files.service';
import { InMemoryVolumeClient } from '../../../test/support/in-memory-volume.client';
import { VOLUME_CLIENT, VolumeEntry, VolumeError } from '../../volumes/volume-client';
import { RebuildService } from './rebuild.service';
import { RecordingJobRun } from '../../../test/support/recording-job-run';

const VOLUMES = ['http://a:1', 'http://b:2', 'http://c:3'];
const [A] = VOLUMES;
const REPLICAS = 2;


/** A volume whose listing shows dot-names too, which nginx's autoindex hides. */
class ListingDotFiles extends InMemoryVolumeClient {
  override async *list(url: string): AsyncIterable<VolumeEntry> {
    yield* super.list(url);
    if (url === `${A}/`) yield { name: '.DS_Store', type: 'file', size: 6, mtime: 0 };
    if (url === `${A}/${encodeURIComponent('dir')}/`) yield { name: '.hidden', type: 'file', size: 3, mtime: 0 };
  }
}

/** SQLite's order for keys: their UTF-8 bytes. */
const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

const VALUES: Record<string, string> = {
  plain: 'plain value',
  'dir/file': 'in a directory',
  'dir/sub/deeper/still/deepest.bin': 'deep',
  'ünïcödé/ключ/😀': 'unicode',
  '名前/ファイル': 'cjk',
  'with space & percent %/and?query#hash': 'odd characters',
  'sv0A/not-a-subvolume': 'looks like a subvolume directory',
  'a/b': 'ab',
  'a/c': 'longer value for a/c',
};
const KEYS = Object.keys(VALUES).sort(byteOrder);

describe(RebuildService.name, () => {
  let moduleRef: TestingModule;
  let service: RebuildService;
  let index: KeyIndex;
  let volumes: InMemoryVolumeClient;
  let subvolumes: number;

  async function start(options: { subvolumes?: number; client?: InMemoryVolumeClient; placement?: Placement } = {}): Promise<void> {
    subvolumes = options.subvolumes ?? 1;
    volumes = options.client ?? new InMemoryVolumeClient();
    const config = loadConfig({ db: ':memory:', volumes: VOLUMES, replicas: REPLICAS, subvolumes });
    const placement = options.placement ? { provide: PLACEMENT, useValue: options.placement } : { provide: PLACEMENT, useExisting: RendezvousPlacement };
    moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot(config), SqliteIndexModule],
      providers: [RendezvousPlacement, placement, RebuildService, { provide: VOLUME_CLIENT, useValue: volumes }],
    }).compile();
    moduleRef.useLogger(false); // skipped files are logged by design
    service = moduleRef.get(RebuildService);
    index = moduleRef.get<KeyIndex>(KEY_INDEX);
  }

  afterEach(async () => {
    await moduleRef.close();
  });

  /** Puts each key's value on the given volumes (its placement by default), at the URLs placement gives. */
  function putBlobs(values: Record<string, string>, on: (key: string) => string[] = (key) => placeKey(key, VOLUMES, REPLICAS)): void {
    for (const [key, value] of Object.entries(values)) {
      for (const volume of on(key)) volumes.blobs.set(blobUrl(key, volume, subvolumes), Buffer.from(value));
    }
  }

  async function store(record: KeyRecord): Promise<void> {
    const intent = { id: `seed-${record.key}`, key: record.key, tempPath: `${TEMP_DIR}/seed`, volumes: record.volumes, createdAt: 1 };
    expect((await index.beginWrite(record, intent)).conflict).toBeUndefined();
    await index.finishWrite(intent.id, record);
  }

  async function allRecords(): Promise<KeyRecord[]> {
    return index.scan(undefined, 100_000);
  }

  /** What is left of a rebuild in the database besides the serving table. */
  async function stagingLeft(): Promise<string[]> {
    const rows: { name: string }[] = await moduleRef
      .get(DataSource)
      .query(`SELECT name FROM sqlite_master WHERE name IN ('keys_rebuild', 'rebuild_changed', 'rebuild_on_insert', 'rebuild_on_update', 'rebuild_on_delete', 'rebuild_on_intent_done')`);
    return rows.map((row) => row.name);
  }

  /** The index a rebuild should produce from blobs at their placement. */
  function expected(values: Record<string, string>): KeyRecord[] {
    return Object.keys(values)
      .sort(byteOrder)
      .map((key) => ({
        key,
        volumes: placeKey(key, VOLUMES, REPLICAS),
        size: Buffer.byteLength(values[key]),
        md5: '',
        state: 'live' as const,
        createdAt: 0, // the in-memory volumes list every mtime as 0
        updatedAt: 0,
      }));
  }

  describe.each([1, 16])('with %i subvolume(s)', (count) => {
    beforeEach(() => start({ subvolumes: count }));

    it('indexes exactly the keys the volumes hold, with their sizes and replicas in placement order', async () => {
      putBlobs(VALUES);
      const run = new RecordingJobRun();
      await service.run(run);

      expect(await allRecords()).toEqual(expected(VALUES));
      expect(run.counters).toEqual({ scanned: KEYS.length * REPLICAS, planned: 0, moved: KEYS.length, skipped: 0, failed: 0, bytes: 0 });
      expect(run.errors).toEqual([]);
      expect(run.phases.map((p) => p.name)).toEqual(['listing volumes', 'ordering replicas', 'swapping in the new index']);
      expect(run.phases[0].total).toBe(VOLUMES.length);
      expect(await stagingLeft()).toEqual([]);
    });

    it('lists replicas in placement order whatever volume they were found on first', async () => {
      // The replica found first (volume a) is placement's last choice.
      const key = [...Array(100).keys()].map((i) => `k${i}`).find((k) => rankVolumes(k, VOLUMES)[2] === A)!;
      const ranked = rankVolumes(key, VOLUMES);
      putBlobs({ [key]: 'value' }, () => [ranked[2], ranked[0]]);
      await service.run(new RecordingJobRun());
      expect((await index.get(key))?.volumes).toEqual([ranked[0], ranked[2]]);
    });

    it('makes the keys answer through the serving index after the swap', async () => {
      putBlobs(VALUES);
      await service.run(new RecordingJobRun());
      expect(await index.list({ prefix: 'dir/', limit: 10, state: 'live' })).toEqual(['dir/file', 'dir/sub/deeper/still/deepest.bin']);
      expect(await index.get('ünïcödé/ключ/😀')).toMatchObject({ size: Buffer.byteLength('unicode') });
      expect(await index.count()).toBe(KEYS.length);
    });
  });

  describe('with one subvolume', () => {
    beforeEach(() => start());

    it('replaces what the index knew: vanished keys go, what it knew of found keys stays', async () => {
      await store({ key: 'vanished', volumes: [A], size: 3, md5: 'x', state: 'live', createdAt: 1, updatedAt: 2 });
      await store({ key: 'plain', volumes: placeKey('plain', VOLUMES, REPLICAS), size: 11, md5: 'known-md5', state: 'unlinked', createdAt: 5, updatedAt: 6 });
      await store({ key: 'a/b', volumes: [A], size: 99, md5: 'stale-md5', state: 'live', createdAt: 7, updatedAt: 8 });
      putBlobs(VALUES);
      const run = new RecordingJobRun();
      await service.run(run);

      expect(await index.get('vanished')).toBeUndefined();
      expect(await index.get('plain')).toEqual({ ...expected(VALUES).find((r) => r.key === 'plain'), md5: 'known-md5', state: 'unlinked', createdAt: 5 });
      expect(await index.get('a/b')).toMatchObject({ size: 2, md5: '', createdAt: 7 });
      expect(run.counters.moved).toBe(KEYS.length);
    });

    it('keeps a write that lands after the walk passed its directory', async () => {
      // Recorded before the rebuild began, renamed into place after the walk
      // listed the volumes: the blobs were never seen, the row must stay.
      const targets = placeKey('late', VOLUMES, REPLICAS);
      const record: KeyRecord = { key: 'late', volumes: targets, size: 5, md5: 'late-md5', state: 'live', createdAt: 1, updatedAt: 1 };
      const intent = { id: 'late-write', key: 'late', tempPath: `${TEMP_DIR}/late`, volumes: targets, createdAt: 1 };
      expect((await index.beginWrite(record, intent)).conflict).toBeUndefined();
      const list = volumes.list.bind(volumes);
      jest.spyOn(volumes, 'list').mockImplementation(async function* (url: string) {
        yield* list(url);
        if (url === `${VOLUMES[VOLUMES.length - 1]}/`) await index.finishWrite(intent.id, record);
      });
      await service.run(new RecordingJobRun());
      expect(await index.get('late')).toEqual(record);
    });

    it('keeps the row of a key whose write is still renaming its uploads at the swap', async () => {
      const targets = placeKey('mid-write', VOLUMES, REPLICAS);
      const record: KeyRecord = { key: 'mid-write', volumes: targets, size: 5, md5: 'md5', state: 'live', createdAt: 1, updatedAt: 1 };
      expect((await index.beginWrite(record, { id: 'w', key: 'mid-write', tempPath: `${TEMP_DIR}/w`, volumes: targets, createdAt: 1 })).conflict).toBeUndefined();
      await service.run(new RecordingJobRun());
      expect(await index.get('mid-write')).toEqual(record);
    });

    it('keeps the newer of two keys that cannot both exist, and reports the other', async () => {
      // A stray `x/y` (its delete failed on one volume) under a newer key `x`, and the reverse.
      const list = volumes.list.bind(volumes);
      putBlobs({ x: 'newer file', 'x/y': 'stray', 'p/q': 'newer below', p: 'stray above' });
      const mtimes: Record<string, number> = { x: 2000, y: 1000, q: 2000, p: 1000 };
      jest.spyOn(volumes, 'list').mockImplementation(async function* (url: string) {
        for await (const entry of list(url)) yield { ...entry, mtime: mtimes[entry.name] ?? 0 };
      });
      const run = new RecordingJobRun();
      await service.run(run);
      expect((await allRecords()).map((r) => r.key)).toEqual(['p/q', 'x']);
      expect(run.errors.map((e) => e.key).sort()).toEqual(['p', 'x/y']);
      expect(run.errors[0].message).toMatch(/^conflicts with the newer key/);
      expect(run.counters.failed).toBe(2);
    });

    it('keeps the newest replica when replicas disagree on the size', async () => {
      const [first, second] = placeKey('k', VOLUMES, REPLICAS);
      volumes.blobs.set(blobUrl('k', first, 1), Buffer.from('old'));
      volumes.blobs.set(blobUrl('k', second, 1), Buffer.from('newer value'));
      const list = volumes.list.bind(volumes);
      jest.spyOn(volumes, 'list').mockImplementation(async function* (url: string) {
        for await (const entry of list(url)) yield { ...entry, mtime: url.startsWith(second) ? 2000 : 1000 };
      });
      await service.run(new RecordingJobRun());
      expect(await index.get('k')).toMatchObject({ volumes: [second], size: 11, updatedAt: 2000, createdAt: 1000 });
    });

    it('never sees the dot-named temporary uploads nginx hides', async () => {
      putBlobs({ k: 'value' });
      volumes.blobs.set(`${A}${TEMP_DIR}/5e1c0f4e-1111-2222-3333-444455556666`, Buffer.from('upload'));
      volumes.blobs.set(`${A}/dir/.hidden`, Buffer.from('hid'));
      const run = new RecordingJobRun();
      await service.run(run);
      expect((await allRecords()).map((r) => r.key)).toEqual(['k']);
      expect(run.counters).toMatchObject({ scanned: REPLICAS, skipped: 0 });
    });

    it('skips, and counts, dot-files a listing shows and files whose path is not a valid key', async () => {
      await moduleRef.close();
      await start({ client: new ListingDotFiles() });
      putBlobs({ 'dir/ok': 'fine' }, () => [A]);
      const invalid = ['_admin/reserved', 'control\u0001char', `${'x'.repeat(256)}/too-long-segment`, `${'y/'.repeat(520)}z`];
      for (const key of invalid) volumes.blobs.set(`${A}/${encodeKeyPath(key)}`, Buffer.from('bad'));

      const run = new RecordingJobRun();
      await service.run(run);
      expect(await allRecords()).toEqual([{ key: 'dir/ok', volumes: [A], size: 4, md5: '', state: 'live', createdAt: 0, updatedAt: 0 }]);
      expect(run.counters).toMatchObject({ scanned: 1 + 2 + invalid.length, skipped: 2 + invalid.length, moved: 1, failed: 0 });
    });

    it('rebuilds an empty index from empty volumes', async () => {
      await store({ key: 'gone', volumes: [A], size: 3, md5: 'x', state: 'live', createdAt: 1, updatedAt: 2 });
      const run = new RecordingJobRun();
      await service.run(run);
      expect(await allRecords()).toEqual([]);
      expect(run.counters).toMatchObject({ scanned: 0, moved: 0 });
      expect(volumes.requests).toEqual(VOLUMES.map((v) => `LIST ${v}/`));
    });
  });

  describe('with 16 subvolumes', () => {
    beforeEach(() => start({ subvolumes: 16 }));

    it('skips a blob under the wrong /svXX, a file at the top level and a directory that is not a subvolume', async () => {
      putBlobs(VALUES);
      const [volume] = placeKey('misplaced', VOLUMES, REPLICAS);
      const right = subvolumeOf('misplaced', volume, 16);
      volumes.blobs.set(`${volume}${subvolumeDir((right + 1) % 16)}/misplaced`, Buffer.from('wrong place'));
      volumes.blobs.set(`${A}/top-level`, Buffer.from('no subvolume'));
      volumes.blobs.set(`${A}/not-sv/x`, Buffer.from('no subvolume'));
      const warn = jest.spyOn(Logger.prototype, 'warn');

      const run = new RecordingJobRun();
      await service.run(run);
      expect(await allRecords()).toEqual(expected(VALUES));
      expect(run.counters).toMatchObject({ scanned: KEYS.length * REPLICAS + 3, skipped: 3, moved: KEYS.length });
      expect(warn.mock.calls.map(([message]) => message)).toEqual(
        expect.arrayContaining([
          `rebuild skips ${volume}${subvolumeDir((right + 1) % 16)}/misplaced: placement puts it under ${subvolumeDir(right)}`,
          `rebuild skips ${A}/top-level: placement puts it under ${subvolumeDir(subvolumeOf('top-level', A, 16))}`,
          `rebuild skips ${A}/not-sv/x: placement puts it under ${subvolumeDir(subvolumeOf('not-sv/x', A, 16))}`,
        ]),
      );
      warn.mockRestore();
    });

    it('indexes a blob under the right /svXX of a volume placement does not pick', async () => {
      const outsider = rankVolumes('k', VOLUMES)[2];
      volumes.blobs.set(blobUrl('k', outsider, 16), Buffer.from('stray'));
      await service.run(new RecordingJobRun());
      expect(await index.get('k')).toMatchObject({ volumes: [outsider], size: 5 });
    });
  });

  describe('with a placement of its own (PLACEMENT replaced)', () => {
    /** Keys under /zone-a on every volume, ranked by rendezvous hashing. */
    const zoneA: Placement = {
      rank: (key) => rankVolumes(key, VOLUMES),
      replicasFor: (key) => placeKey(key, VOLUMES, REPLICAS),
      blobUrl: (key, volume) => `${volume}/zone-a/${encodeKeyPath(key)}`,
    };

    beforeEach(() => start({ placement: zoneA }));
    afterEach(() => jest.restoreAllMocks());

    it('indexes the files where its blobUrl puts them and skips the others (a rebuild never reads keys from paths placement does not use)', async () => {
      for (const [key, value] of Object.entries(VALUES)) {
        for (const volume of placeKey(key, VOLUMES, REPLICAS)) volumes.blobs.set(zoneA.blobUrl(key, volume), Buffer.from(value));
      }
      volumes.blobs.set(`${A}/outside`, Buffer.from('not under /zone-a'));
      volumes.blobs.set(`${A}/zone-b/k`, Buffer.from('another zone'));
      volumes.blobs.set(zoneA.blobUrl('zone-a/inner', A), Buffer.from('a key that starts with zone-a'));
      const warn = jest.spyOn(Logger.prototype, 'warn');

      const run = new RecordingJobRun();
      await service.run(run);
      const inner = { key: 'zone-a/inner', volumes: [A], size: 29, md5: '', state: 'live' as const, createdAt: 0, updatedAt: 0 };
      expect(await allRecords()).toEqual([...expected(VALUES), inner].sort((a, b) => byteOrder(a.key, b.key)));
      expect(run.counters).toMatchObject({ scanned: KEYS.length * REPLICAS + 3, skipped: 2, moved: KEYS.length + 1 });
      expect(warn.mock.calls.map(([message]) => message)).toEqual(
        expect.arrayContaining([
          `rebuild skips ${A}/outside: placement puts it under /zone-a`,
          `rebuild skips ${A}/zone-b/k: placement puts it under /zone-a`,
        ]),
      );
    });
  });

  describe('leaves the serving index untouched', () => {
    let before: KeyRecord[];

    beforeEach(async () => {
      await start();
      await store({ key: 'known', volumes: [A], size: 3, md5: 'x', state: 'live', createdAt: 1, updatedAt: 2 });
      before = await allRecords();
      putBlobs(VALUES);
    });

    it('and rejects when a volume cannot be listed', async () => {
      volumes.unreachable.add(VOLUMES[1]);
      const run = new RecordingJobRun();
      const error = await service.run(run).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(VolumeError);
      expect((error as VolumeError).message).toBe(`GET ${VOLUMES[1]}/: connection refused`);
      expect(await allRecords()).toEqual(before);
      expect(await stagingLeft()).toEqual([]);
    });

    it('and rejects when a listing breaks off in a subdirectory', async () => {
      const list = volumes.list.bind(volumes);
      jest.spyOn(volumes, 'list').mockImplementation(async function* (url: string) {
        if (url === `${VOLUMES[2]}/dir/`) throw VolumeError.status('GET', url, 500);
        yield* list(url);
      });
      await expect(service.run(new RecordingJobRun())).rejects.toThrow(`GET ${VOLUMES[2]}/dir/: volume answered 500`);
      expect(await allRecords()).toEqual(before);
      expect(await stagingLeft()).toEqual([]);
    });

    it.each([1, 3, 7])('when cancelled while listing (after %i files)', async (files) => {
      const run = new RecordingJobRun();
      run.abortAfterScanned = files;
      await service.run(run);
      expect(run.counters.scanned).toBeGreaterThanOrEqual(files);
      expect(run.counters.scanned).toBeLessThan(KEYS.length * REPLICAS);
      expect(run.counters.moved).toBe(0);
      expect(await allRecords()).toEqual(before);
      expect(await stagingLeft()).toEqual([]);
    });

    it('when cancelled while ordering replicas', async () => {
      const run = new RecordingJobRun();
      run.abortOnPhase = 'ordering replicas';
      await service.run(run);
      expect(run.counters.scanned).toBe(KEYS.length * REPLICAS);
      expect(run.phases.map((p) => p.name)).not.toContain('swapping in the new index');
      expect(await allRecords()).toEqual(before);
      expect(await stagingLeft()).toEqual([]);
    });

    it('when cancelled before it starts', async () => {
      const run = new RecordingJobRun();
      run.controller.abort();
      await service.run(run);
      expect(volumes.requests).toEqual([]);
      expect(await allRecords()).toEqual(before);
      expect(await stagingLeft()).toEqual([]);
    });

    it('and a rebuild after a failed one works', async () => {
      volumes.unreachable.add(VOLUMES[1]);
      await expect(service.run(new RecordingJobRun())).rejects.toBeInstanceOf(VolumeError);
      volumes.unreachable.clear();
      await service.run(new RecordingJobRun());
      expect(await allRecords()).toEqual(expected(VALUES));
    });
  });
});
