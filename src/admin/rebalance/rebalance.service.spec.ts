import { Test, TestingModule } from '@nestjs/testing';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ConfigModule } from '../../config/config.module';
import { loadConfig } from '../../config/load-config';
import { PLACEMENT, Placement } from '../../hashing/placement';
import { RendezvousPlacement } from '../../hashing/rendezvous-placement.service';
import { VolumeHealth } from '../../health/volume-health.service';
import { blobUrl, placeKey, rankVolumes } from '../../hashing/rendezvous';
import { SqliteIndexModule } from '../../index/sqlite/sqlite-index.module';
import { KEY_INDEX, KeyIndex } from '../../index/key-index';
import type { KeyRecord } from '../../index/key-record';
import { KeyLocks } from '../../replicas/key-locks';
import { KeyWriter } from '../../keys/key-writer.service';
import { Md5Worker } from '../../keys/md5-worker';
import { ReplicaUpload } from '../../keys/replica-upload';
import { ReplicaFiles, TEMP_DIR } from '../../replicas/replica-files.service';
import { InMemoryVolumeClient } from '../../../test/support/in-memory-volume.client';
import { VOLUME_CLIENT } from '../../volumes/volume-client';
import { RebalanceService } from './rebalance.service';
import { RecordingJobRun } from '../../../test/support/recording-job-run';

const [A, B, C, D] = ['http://a:1', 'http://b:2', 'http://c:3', 'http://d:4'];
const OLD_VOLUMES = [A, B, C];
const NEW_VOLUMES = [A, B, C, D];
const REPLICAS = 2;
const HELLO_MD5 = createHash('md5').update('hello').digest('hex');


/** SQLite's order for keys: their UTF-8 bytes. */
const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

const SEEDED: Record<string, string> = Object.fromEntries([
  ...Array.from({ length: 30 }, (_, i) => [`key-${i}`, `value of key ${i}`.repeat(1 + (i % 3))]),
  ['deep/path/to/a/blob.bin', 'deep'],
  ['ünïcödé/ключ/😀', 'unicode value'],
  ['with space & percent %', 'odd characters'],
]);
const SEEDED_KEYS = Object.keys(SEEDED).sort(byteOrder);

const samePlacement = (key: string) => placeKey(key, NEW_VOLUMES, REPLICAS).join() === placeKey(key, OLD_VOLUMES, REPLICAS).join();

describe(RebalanceService.name, () => {
  let dir: string;
  let db: string;
  let volumes: InMemoryVolumeClient;
  let moduleRef: TestingModule | undefined;
  let service: RebalanceService;
  let index: KeyIndex;
  let placement: Placement;

  /** One process over the shared database file and volumes, with this volume list. */
  async function open(volumeList: string[], subvolumes = 1): Promise<TestingModule> {
    const config = loadConfig({ db, volumes: volumeList, replicas: REPLICAS, subvolumes });
    const ref = await Test.createTestingModule({
      imports: [ConfigModule.forRoot(config), SqliteIndexModule],
      providers: [RendezvousPlacement, { provide: PLACEMENT, useExisting: RendezvousPlacement }, VolumeHealth, KeyLocks, ReplicaFiles, Md5Worker, ReplicaUpload, KeyWriter, RebalanceService, { provide: VOLUME_CLIENT, useValue: volumes }],
    }).compile();
    ref.useLogger(false); // best-effort deletes log their failures by design
    return ref;
  }

  /** Writes keys through the write path under the old volume list, then reopens with one more volume. */
  async function seedThenAddVolume(values: Record<string, string> = SEEDED, subvolumes = 1): Promise<void> {
    const seeding = await open(OLD_VOLUMES, subvolumes);
    const writer = seeding.get(KeyWriter);
    for (const [key, value] of Object.entries(values)) await writer.put(key, Readable.from([Buffer.from(value)]), Buffer.byteLength(value));
    await seeding.close();
    await reopen(NEW_VOLUMES, subvolumes);
    volumes.requests.length = 0;
  }

  async function reopen(volumeList: string[], subvolumes = 1): Promise<void> {
    await moduleRef?.close();
    moduleRef = await open(volumeList, subvolumes);
    service = moduleRef.get(RebalanceService);
    index = moduleRef.get<KeyIndex>(KEY_INDEX);
    placement = moduleRef.get<Placement>(PLACEMENT);
  }

  /** A record written straight into the index, its blob put on each volume it lists (or as given). */
  async function storeRecord(record: KeyRecord, blobs: Record<string, string> = {}): Promise<void> {
    const intent = { id: `seed-${record.key}`, key: record.key, tempPath: `${TEMP_DIR}/seed`, volumes: record.volumes, createdAt: 1 };
    expect((await index.beginWrite(record, intent)).conflict).toBeUndefined();
    await index.finishWrite(intent.id, record);
    for (const volume of record.volumes) {
      volumes.blobs.set(placement.blobUrl(record.key, volume), Buffer.from(blobs[volume] ?? 'hello'));
    }
  }

  function hello(key: string, volumesOf: string[], overrides: Partial<KeyRecord> = {}): KeyRecord {
    return { key, volumes: volumesOf, size: 5, md5: HELLO_MD5, state: 'live', createdAt: 100, updatedAt: 200, ...overrides };
  }

  /** The whole store once every key sits exactly on its placement. */
  function settled(values: Record<string, string>, subvolumes = 1): Record<string, string> {
    return Object.fromEntries(
      Object.entries(values).flatMap(([key, value]) =>
        placeKey(key, NEW_VOLUMES, REPLICAS).map((volume) => [blobUrl(key, volume, subvolumes), value]),
      ),
    );
  }

  async function allRecords(): Promise<KeyRecord[]> {
    return index.scan(undefined, 100_000);
  }

  const requestsOf = (method: string) => volumes.requests.filter((r) => r.startsWith(`${method} `));

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mkv-rebalance-spec-'));
    db = join(dir, 'index.db');
    volumes = new InMemoryVolumeClient();
    moduleRef = undefined;
  });

  afterEach(async () => {
    await moduleRef?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('has keys on both sides of the change to rebalance', () => {
    // Guards the fixtures: a seed where nothing (or everything) moves would prove little.
    expect(SEEDED_KEYS.filter(samePlacement).length).toBeGreaterThan(3);
    expect(SEEDED_KEYS.filter((key) => !samePlacement(key)).length).toBeGreaterThan(3);
  });

  describe('a dry run', () => {
    it('plans exactly the keys whose placement changed, touching no volume and no index row', async () => {
      await seedThenAddVolume();
      const before = await allRecords();
      const run = new RecordingJobRun(true);
      await service.run(run);

      const changed = SEEDED_KEYS.filter((key) => !samePlacement(key));
      expect(run.planned.map((m) => m.key)).toEqual(changed);
      for (const move of run.planned) {
        const old = placeKey(move.key, OLD_VOLUMES, REPLICAS);
        const wanted = placeKey(move.key, NEW_VOLUMES, REPLICAS);
        expect(move).toEqual({
          key: move.key,
          size: Buffer.byteLength(SEEDED[move.key]),
          from: old[0],
          to: wanted.filter((v) => !old.includes(v)),
          drop: old.filter((v) => !wanted.includes(v)),
        });
        expect(move.to).toEqual([D]); // only the new volume can be missing
      }
      expect(volumes.requests).toEqual([]);
      expect(await allRecords()).toEqual(before);
      expect(run.phases).toEqual([{ name: 'planning', total: SEEDED_KEYS.length }]);
      expect(run.done).toBe(SEEDED_KEYS.length);
      expect(run.counters).toEqual({
        scanned: SEEDED_KEYS.length,
        planned: changed.length,
        moved: 0,
        skipped: SEEDED_KEYS.length - changed.length,
        failed: 0,
        bytes: changed.reduce((sum, key) => sum + Buffer.byteLength(SEEDED[key]), 0),
      });
    });

    it('plans a reorder of the same volumes as a move with nothing to copy', async () => {
      await reopen(NEW_VOLUMES);
      const [first, second] = placeKey('k', NEW_VOLUMES, REPLICAS);
      await storeRecord(hello('k', [second, first]));
      const run = new RecordingJobRun(true);
      await service.run(run);
      expect(run.planned).toEqual([{ key: 'k', size: 5, from: second, to: [], drop: [] }]);
      expect(run.counters).toMatchObject({ scanned: 1, planned: 1, skipped: 0, bytes: 0 });
    });

    it('pages through more keys than one page holds', async () => {
      await reopen(NEW_VOLUMES);
      const keys = Array.from({ length: 2100 }, (_, i) => `p${String(i).padStart(4, '0')}`);
      for (const key of keys) {
        const record = hello(key, rankVolumes(key, NEW_VOLUMES).slice(2, 4));
        await index.beginWrite(record, { id: key, key, tempPath: `${TEMP_DIR}/${key}`, volumes: [], createdAt: 1 });
        await index.finishWrite(key, record);
      }
      const run = new RecordingJobRun(true);
      await service.run(run);
      expect(run.planned.map((m) => m.key)).toEqual(keys);
      expect(run.counters).toMatchObject({ scanned: 2100, planned: 2100, skipped: 0, bytes: 2100 * 5 * 2 });
      expect(volumes.requests).toEqual([]);
    });
  });

  describe('a real run', () => {
    it('puts every key exactly on its placement and records its replicas in placement order', async () => {
      await seedThenAddVolume();
      const before = new Map((await allRecords()).map((r) => [r.key, r]));
      const run = new RecordingJobRun();
      await service.run(run);

      expect(volumes.contents()).toEqual(settled(SEEDED));
      expect(volumes.tempUrls()).toEqual([]);
      const after = await allRecords();
      expect(after.map((r) => r.key)).toEqual(SEEDED_KEYS);
      for (const record of after) {
        // Only the replicas move: the value and its Last-Modified stay.
        expect(record).toEqual({ ...before.get(record.key), volumes: placeKey(record.key, NEW_VOLUMES, REPLICAS) });
      }
      const changed = SEEDED_KEYS.filter((key) => !samePlacement(key));
      expect(run.errors).toEqual([]);
      expect(run.phases).toEqual([{ name: 'moving', total: SEEDED_KEYS.length }]);
      expect(run.counters).toEqual({
        scanned: SEEDED_KEYS.length,
        planned: 0,
        moved: changed.length,
        skipped: SEEDED_KEYS.length - changed.length,
        failed: 0,
        bytes: changed.reduce((sum, key) => sum + Buffer.byteLength(SEEDED[key]), 0),
      });
      expect(run.planned).toEqual([]);
    });

    it('copies before it records, and records before it deletes the copies no longer wanted', async () => {
      await seedThenAddVolume();
      const changed = SEEDED_KEYS.filter((key) => !samePlacement(key));
      const indexAtDelete: { url: string; volumes: string[] | undefined }[] = [];
      const deleteBlob = volumes.delete.bind(volumes);
      jest.spyOn(volumes, 'delete').mockImplementation(async (url) => {
        const key = changed.find((k) => placeKey(k, NEW_VOLUMES, REPLICAS).concat(OLD_VOLUMES).some((v) => blobUrl(k, v, 1) === url));
        if (key) indexAtDelete.push({ url, volumes: (await index.get(key))?.volumes });
        return deleteBlob(url);
      });
      await service.run(new RecordingJobRun(), { concurrency: 1 });

      for (const key of changed) {
        const [dropped] = placeKey(key, OLD_VOLUMES, REPLICAS).filter((v) => !placeKey(key, NEW_VOLUMES, REPLICAS).includes(v));
        const dropUrl = blobUrl(key, dropped, 1);
        const copiedInto = volumes.requests.findIndex((r) => r.startsWith('MOVE ') && r.endsWith(` ${blobUrl(key, D, 1)}`));
        const deleted = volumes.requests.indexOf(`DELETE ${dropUrl}`);
        expect(copiedInto).toBeGreaterThanOrEqual(0);
        expect(deleted).toBeGreaterThan(copiedInto);
        expect(indexAtDelete.find((d) => d.url === dropUrl)?.volumes).toEqual(placeKey(key, NEW_VOLUMES, REPLICAS));
      }
      // Keys already in place are read and left alone.
      const touched = new Set(volumes.requests.flatMap((r) => r.split(' ').slice(1)));
      for (const key of SEEDED_KEYS.filter(samePlacement)) {
        for (const volume of NEW_VOLUMES) expect(touched.has(blobUrl(key, volume, 1))).toBe(false);
      }
    });

    it('moves keys of every state', async () => {
      await seedThenAddVolume();
      const [key] = SEEDED_KEYS.filter((k) => !samePlacement(k));
      await index.setState(key, 'unlinked', 300);
      await service.run(new RecordingJobRun());
      expect(await index.get(key)).toMatchObject({ state: 'unlinked', volumes: placeKey(key, NEW_VOLUMES, REPLICAS), updatedAt: 300 });
      expect(volumes.contents()).toEqual(settled(SEEDED));
    });

    it('only reorders a key that already has the right volumes, copying and deleting nothing', async () => {
      await reopen(NEW_VOLUMES);
      const [first, second] = placeKey('k', NEW_VOLUMES, REPLICAS);
      await storeRecord(hello('k', [second, first]));
      volumes.requests.length = 0;
      const run = new RecordingJobRun();
      await service.run(run);
      expect(volumes.requests).toEqual([]);
      expect((await index.get('k'))?.volumes).toEqual([first, second]);
      expect(run.counters).toMatchObject({ scanned: 1, moved: 1, bytes: 0 });
    });

    it('does nothing the second time', async () => {
      await seedThenAddVolume();
      await service.run(new RecordingJobRun());
      volumes.requests.length = 0;
      const again = new RecordingJobRun();
      await service.run(again);
      expect(volumes.requests).toEqual([]);
      expect(again.counters).toEqual({ scanned: SEEDED_KEYS.length, planned: 0, moved: 0, skipped: SEEDED_KEYS.length, failed: 0, bytes: 0 });
    });

    it('places copies in their subvolume directories', async () => {
      await seedThenAddVolume(SEEDED, 16);
      await service.run(new RecordingJobRun());
      expect(volumes.contents()).toEqual(settled(SEEDED, 16));
      expect(Object.keys(volumes.contents()).every((url) => /^http:\/\/[a-d]:[1-4]\/sv[0-9A-F]{2}\//.test(url))).toBe(true);
    });
  });

  describe('failures', () => {
    beforeEach(() => reopen(NEW_VOLUMES));

    /** A key whose current volumes are the two placement wants least: both replicas must be copied. */
    function farFromHome(key: string): { targets: string[]; sources: string[] } {
      const ranked = rankVolumes(key, NEW_VOLUMES);
      return { targets: ranked.slice(0, 2), sources: ranked.slice(2, 4) };
    }

    it('fails a key whose only source is unreachable, keeping its copy and its record', async () => {
      const { targets, sources } = farFromHome('k');
      const record = hello('k', [sources[0]]);
      await storeRecord(record);
      await storeRecord(hello('healthy', rankVolumes('healthy', NEW_VOLUMES).slice(2, 4)));
      volumes.unreachable.add(sources[0]);
      volumes.requests.length = 0;

      const run = new RecordingJobRun();
      await service.run(run);

      expect(run.errors).toEqual([{ key: 'k', message: expect.stringContaining(`GET ${placement.blobUrl('k', sources[0])}`) }]);
      expect(await index.get('k')).toEqual(record);
      expect(volumes.blobs.get(placement.blobUrl('k', sources[0]))?.toString()).toBe('hello');
      for (const target of targets) expect(volumes.blobs.has(placement.blobUrl('k', target))).toBe(false);
      expect(requestsOf('DELETE').filter((r) => !r.includes(TEMP_DIR))).not.toContain(`DELETE ${placement.blobUrl('k', sources[0])}`);
      expect(volumes.tempUrls()).toEqual([]);
      // The other key is moved all the same.
      expect((await index.get('healthy'))?.volumes).toEqual(placeKey('healthy', NEW_VOLUMES, REPLICAS));
      expect(run.counters).toMatchObject({ scanned: 2, moved: 1, skipped: 0, failed: 1 });
      expect(run.counters.scanned).toBe(run.counters.moved + run.counters.skipped + run.counters.failed);
    });

    it('records the copies it made when another target fails, deletes nothing, and finishes on the next run', async () => {
      const { targets, sources } = farFromHome('k');
      await storeRecord(hello('k', [sources[0]]));
      volumes.failingPuts.set(targets[1], 'after-body');

      const run = new RecordingJobRun();
      await service.run(run);
      expect(run.errors).toEqual([{ key: 'k', message: expect.stringContaining('507') }]);
      expect((await index.get('k'))?.volumes).toEqual([targets[0], sources[0]]);
      expect(volumes.contents()).toEqual({
        [placement.blobUrl('k', targets[0])]: 'hello',
        [placement.blobUrl('k', sources[0])]: 'hello',
      });

      volumes.failingPuts.clear();
      const again = new RecordingJobRun();
      await service.run(again);
      expect(again.errors).toEqual([]);
      expect(again.counters).toMatchObject({ moved: 1, failed: 0, bytes: 5 });
      expect((await index.get('k'))?.volumes).toEqual(targets);
      expect(volumes.contents()).toEqual(Object.fromEntries(targets.map((v) => [placement.blobUrl('k', v), 'hello'])));
    });

    it.each([
      ['the wrong size', 'hello!'],
      ['the wrong bytes', 'hellx'],
    ])('refuses a source with %s and copies from the next replica', async (_what, bad) => {
      const { targets, sources } = farFromHome('k');
      await storeRecord(hello('k', sources), { [sources[0]]: bad });
      volumes.requests.length = 0;

      const run = new RecordingJobRun();
      await service.run(run);
      expect(run.errors).toEqual([]);
      expect(volumes.contents()).toEqual(Object.fromEntries(targets.map((v) => [placement.blobUrl('k', v), 'hello'])));
      expect((await index.get('k'))?.volumes).toEqual(targets);
      expect(volumes.tempUrls()).toEqual([]);
      const gets = requestsOf('GET');
      expect(gets.indexOf(`GET ${placement.blobUrl('k', sources[0])}`)).toBeLessThan(gets.indexOf(`GET ${placement.blobUrl('k', sources[1])}`));
      expect(run.counters).toMatchObject({ moved: 1, failed: 0, bytes: 10 });
    });

    it.each([
      ['size', 'hello!', 'has 6 bytes, the index says 5'],
      ['MD5', 'hellx', 'does not match the index MD5'],
    ])('fails a key when every source has the wrong %s, deleting nothing', async (_what, bad, reason) => {
      const { targets, sources } = farFromHome('k');
      const record = hello('k', sources);
      await storeRecord(record, { [sources[0]]: bad, [sources[1]]: bad });

      const run = new RecordingJobRun();
      await service.run(run);
      expect(run.errors).toEqual([{ key: 'k', message: `copy from ${sources[1]} ${reason}` }]);
      expect(await index.get('k')).toEqual(record);
      expect(volumes.contents()).toEqual(Object.fromEntries(sources.map((v) => [placement.blobUrl('k', v), bad])));
      for (const target of targets) expect(volumes.blobs.has(placement.blobUrl('k', target))).toBe(false);
    });

    it('copies a record without an MD5 (as a rebuild leaves it) checking only the size', async () => {
      const { targets, sources } = farFromHome('k');
      await storeRecord(hello('k', [sources[0]], { md5: '' }), { [sources[0]]: 'hellx' });
      await storeRecord(hello('short', [farFromHome('short').sources[0]], { md5: '' }), { [farFromHome('short').sources[0]]: 'hell' });

      const run = new RecordingJobRun();
      await service.run(run);
      expect(volumes.blobs.get(placement.blobUrl('k', targets[0]))?.toString()).toBe('hellx');
      expect((await index.get('k'))?.volumes).toEqual(targets);
      expect(await index.get('k')).toMatchObject({ md5: '' });
      expect(run.errors).toEqual([{ key: 'short', message: `copy from ${farFromHome('short').sources[0]} has 4 bytes, the index says 5` }]);
    });
  });

  describe('cancel', () => {
    it('stops before the next key once the signal is aborted', async () => {
      await seedThenAddVolume();
      const before = await allRecords();
      const run = new RecordingJobRun();
      run.abortAfterScanned = 1;
      await service.run(run, { concurrency: 1 });

      expect(run.counters.scanned).toBe(1);
      expect(run.counters.moved + run.counters.skipped).toBe(1);
      const after = await allRecords();
      // Only the first key may have changed.
      expect(after.slice(1)).toEqual(before.slice(1));
      expect(after[0]).toEqual({ ...before[0], volumes: placeKey(before[0].key, NEW_VOLUMES, REPLICAS) });
    });

    it('does nothing when cancelled before it starts', async () => {
      await seedThenAddVolume();
      const before = await allRecords();
      const run = new RecordingJobRun();
      run.controller.abort();
      await service.run(run);
      expect(run.counters.scanned).toBe(0);
      expect(volumes.requests).toEqual([]);
      expect(await allRecords()).toEqual(before);
    });

    it('stops a dry run at the next page', async () => {
      await reopen(NEW_VOLUMES);
      for (let i = 0; i < 1500; i++) {
        const key = `p${String(i).padStart(4, '0')}`;
        const record = hello(key, rankVolumes(key, NEW_VOLUMES).slice(2, 4));
        await index.beginWrite(record, { id: key, key, tempPath: `${TEMP_DIR}/${key}`, volumes: [], createdAt: 1 });
        await index.finishWrite(key, record);
      }
      const run = new RecordingJobRun(true);
      run.abortAfterScanned = 10;
      await service.run(run);
      expect(run.counters.scanned).toBe(1000);
      expect(run.planned).toHaveLength(1000);
    });
  });
});
