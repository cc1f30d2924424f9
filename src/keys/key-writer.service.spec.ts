import { Test, TestingModule } from '@nestjs/testing';
import { createHash } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { MkvError, MkvErrorCode } from '../common/mkv-error';
import { ConfigModule } from '../config/config.module';
import { ConfigInput, loadConfig } from '../config/load-config';
import { PLACEMENT, Placement } from '../hashing/placement';
import { RendezvousPlacement } from '../hashing/rendezvous-placement.service';
import { VolumeHealth } from '../health/volume-health.service';
import { SqliteIndexModule } from '../index/sqlite/sqlite-index.module';
import { KEY_INDEX, KeyIndex } from '../index/key-index';
import { DIRECT_WRITE, type KeyRecord } from '../index/key-record';
import { InMemoryVolumeClient } from '../../test/support/in-memory-volume.client';
import { VOLUME_CLIENT } from '../volumes/volume-client';
import { KeyLocks } from '../replicas/key-locks';
import { KeyWriter } from './key-writer.service';
import { Md5Worker } from './md5-worker';
import { ReplicaUpload, SMALL_VALUE_BYTES } from './replica-upload';
import { ReplicaFiles, TEMP_DIR } from '../replicas/replica-files.service';
import { KeysService } from './keys.service';
import { rejection } from '../../test/support/rejection';
import { storeFinished } from '../../test/support/index-records';

const HELLO_MD5 = '5d41402abc4b2a76b9719d911017c592'; // python3: hashlib.md5(b'hello').hexdigest()
const WORLD_MD5 = '7d793037a0760186574b0282f2f435e7'; // md5('world')

function body(...chunks: string[]): Readable {
  return Readable.from(chunks.map((chunk) => Buffer.from(chunk)));
}


describe(KeyWriter.name, () => {
  let moduleRef: TestingModule;
  let writer: KeyWriter;
  let keys: KeysService;
  let index: KeyIndex;
  let placement: Placement;
  let volumes: InMemoryVolumeClient;

  async function start(overrides: ConfigInput = {}): Promise<void> {
    const config = loadConfig({ db: ':memory:', volumes: 'a:1,b:2,c:3', replicas: 2, ...overrides });
    volumes = new InMemoryVolumeClient();
    moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot(config), SqliteIndexModule],
      providers: [KeyLocks, ReplicaFiles, Md5Worker, ReplicaUpload, KeyWriter, KeysService, RendezvousPlacement, { provide: PLACEMENT, useExisting: RendezvousPlacement }, VolumeHealth, { provide: VOLUME_CLIENT, useValue: volumes }],
    }).compile();
    moduleRef.useLogger(false); // the failure paths log warnings by design
    writer = moduleRef.get(KeyWriter);
    keys = moduleRef.get(KeysService);
    index = moduleRef.get<KeyIndex>(KEY_INDEX);
    placement = moduleRef.get<Placement>(PLACEMENT);
  }

  beforeEach(() => start());

  afterEach(async () => {
    await moduleRef.close();
  });

  const put = (key: string, value: string) => writer.put(key, body(value), Buffer.byteLength(value));

  /** Where the key's replicas live, each holding `value`. */
  function replicasHolding(key: string, value: string): Record<string, string> {
    return Object.fromEntries(placement.replicasFor(key).map((volume) => [placement.blobUrl(key, volume), value]));
  }

  describe('a new key', () => {
    it('is created on each of its replicas and recorded with its size and MD5', async () => {
      await expect(put('greeting', 'hello')).resolves.toEqual({ created: true });

      expect(volumes.contents()).toEqual(replicasHolding('greeting', 'hello'));
      expect(Object.keys(volumes.contents())).toHaveLength(2);
      expect(await index.get('greeting')).toEqual({
        key: 'greeting',
        volumes: placement.replicasFor('greeting'),
        size: 5,
        md5: HELLO_MD5,
        state: 'live',
        createdAt: expect.any(Number),
        updatedAt: expect.any(Number),
      });
      expect(await index.pendingWrites()).toEqual([]);
    });

    // Issue 12: a small new value has no old value a reader could see, so it skips the temporary name and the MOVEs.
    it('with a small value is written straight to its paths: no temporary name, no MOVE', async () => {
      await put('greeting', 'hello');
      expect(volumes.requests.sort()).toEqual(placement.replicasFor('greeting').map((volume) => `PUT ${placement.blobUrl('greeting', volume)}`).sort());
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('with a large value is uploaded under a temporary dot-name, then renamed into place', async () => {
      await writer.put('big', body('x'.repeat(SMALL_VALUE_BYTES + 1)), SMALL_VALUE_BYTES + 1);
      const puts = volumes.requests.filter((r) => r.startsWith('PUT '));
      expect(puts).toHaveLength(2);
      for (const request of puts) expect(request).toMatch(/^PUT http:\/\/[a-c]:[1-3]\/\.mkv-tmp\/[0-9a-f-]{36}$/);
      expect(volumes.requests.filter((r) => r.startsWith('MOVE '))).toHaveLength(2);
    });

    it('that two PUTs race for is written once: the second waits for the lock and overwrites', async () => {
      const [first, second] = await Promise.all([put('k', 'hello'), put('k', 'world')]);
      expect([first, second]).toEqual([{ created: true }, { created: false }]);
      expect(volumes.contents()).toEqual(replicasHolding('k', 'world'));
      expect(await index.get('k')).toMatchObject({ md5: WORLD_MD5 });
      expect(volumes.requests.filter((r) => r.startsWith('MOVE '))).toHaveLength(2); // the overwrite's
    });

    it('does not hold the key\'s lock while its small body is still arriving: a DELETE of the key meanwhile answers at once', async () => {
      const slowBody = new PassThrough();
      slowBody.write('hel');
      const writing = writer.put('k', slowBody, 5);
      await new Promise((resolve) => setImmediate(resolve));
      const error = await rejection(keys.delete('k'));
      expect(error.code).toBe(MkvErrorCode.NotFound);
      slowBody.end('lo');
      await expect(writing).resolves.toEqual({ created: true });
      expect(volumes.contents()).toEqual(replicasHolding('k', 'hello'));
    });

    // Both pass the check made when their intents are recorded; the one recorded second must not stay.
    it('that conflicts with a key recorded while it was uploading is refused with 409 and its blobs removed', async () => {
      const results = await Promise.allSettled([put('a', 'hello'), put('a/b', 'world')]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
      const error = (results[1] as PromiseRejectedResult).reason as MkvError;
      expect([error.code, error.message]).toEqual([MkvErrorCode.KeyConflict, 'key a/b conflicts with existing key a']);
      expect(volumes.contents()).toEqual(replicasHolding('a', 'hello'));
      expect(await index.get('a/b')).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);
    });
  });

  describe('an overwrite', () => {
    it('replaces the value everywhere and reports created false', async () => {
      await put('k', 'hello');
      const first = await index.get('k');
      await expect(put('k', 'world')).resolves.toEqual({ created: false });

      expect(volumes.contents()).toEqual(replicasHolding('k', 'world'));
      const record = await index.get('k');
      expect(record).toMatchObject({ md5: WORLD_MD5, size: 5, state: 'live', createdAt: first?.createdAt });
      expect(record!.updatedAt).toBeGreaterThanOrEqual(first!.updatedAt);
    });

    it('of an unlinked key reports created true and makes it live again', async () => {
      await put('k', 'hello');
      await index.setState('k', 'unlinked', Date.now());
      await expect(put('k', 'world')).resolves.toEqual({ created: true });
      expect((await index.get('k'))?.state).toBe('live');
    });

    it('deletes the copies left on volumes that are no longer replicas of the key', async () => {
      const [, , outsider] = placement.rank('k');
      const old: KeyRecord = { key: 'k', volumes: [outsider], size: 5, md5: HELLO_MD5, state: 'live', createdAt: 1, updatedAt: 1 };
      await index.beginWrite(old, { id: 'old', key: 'k', tempPath: `${TEMP_DIR}/old`, volumes: [outsider], createdAt: 1 });
      await index.finishWrite('old', old);
      volumes.blobs.set(placement.blobUrl('k', outsider), Buffer.from('hello'));

      await expect(put('k', 'world')).resolves.toEqual({ created: false });
      expect(volumes.contents()).toEqual(replicasHolding('k', 'world'));
      expect((await index.get('k'))?.volumes).toEqual(placement.replicasFor('k'));
    });
  });

  it('writes a key again after KeysService deleted it', async () => {
    await put('k', 'hello');
    await keys.delete('k');
    expect(volumes.contents()).toEqual({});
    expect(await index.get('k')).toBeUndefined();

    await expect(put('k', 'world')).resolves.toEqual({ created: true });
    expect(volumes.contents()).toEqual(replicasHolding('k', 'world'));
  });

  describe('refuses', () => {
    it('a request that declares an empty body, before any upload', async () => {
      const error = await rejection(writer.put('k', body(), 0));
      expect(error).toBeInstanceOf(MkvError);
      expect([error.code, error.message]).toEqual([MkvErrorCode.EmptyValue, 'empty value']);
      expect(volumes.requests).toEqual([]);
    });

    it('a streamed body that turns out empty, and removes its uploads', async () => {
      const error = await rejection(writer.put('k', body(), undefined));
      expect([error.code, error.message]).toEqual([MkvErrorCode.EmptyValue, 'empty value']);
      expect(volumes.contents()).toEqual({});
      expect(await index.get('k')).toBeUndefined();
    });

    it('a key below an existing key, before any upload of a large value', async () => {
      await put('a', 'hello');
      volumes.requests.length = 0;
      const error = await rejection(writer.put('a/b', body('x'.repeat(SMALL_VALUE_BYTES + 1)), SMALL_VALUE_BYTES + 1));
      expect([error.code, error.message]).toEqual([MkvErrorCode.KeyConflict, 'key a/b conflicts with existing key a']);
      expect(volumes.requests).toEqual([]);
      expect(await index.get('a/b')).toBeUndefined();
    });

    it('a small value for a key below an existing key, removing its uploads', async () => {
      await put('a', 'hello');
      const error = await rejection(put('a/b', 'world'));
      expect([error.code, error.message]).toEqual([MkvErrorCode.KeyConflict, 'key a/b conflicts with existing key a']);
      expect(volumes.contents()).toEqual(replicasHolding('a', 'hello'));
      expect(await index.get('a/b')).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('a key above an existing unlinked key', async () => {
      await put('a/b', 'hello');
      await index.setState('a/b', 'unlinked', Date.now());
      const error = await rejection(put('a', 'world'));
      expect([error.code, error.message]).toEqual([MkvErrorCode.KeyConflict, 'key a conflicts with existing key a/b']);
      expect(volumes.contents()).toEqual(replicasHolding('a/b', 'hello'));
    });

    it.each([
      ['breaks off a small body', () => Readable.from((async function* () { yield Buffer.from('hel'); throw new Error('aborted'); })())],
      ['went away before its small body was read', () => body('hello').destroy()],
    ])('a client that %s, before any upload', async (_, brokenBody) => {
      const error = await rejection(writer.put('k', brokenBody(), 5));
      expect([error.code, error.message]).toEqual([MkvErrorCode.InvalidRequest, 'request body not received: aborted']);
      expect(volumes.requests).toEqual([]);
      expect(await index.get('k')).toBeUndefined();
    });

    it('a write when there are fewer volumes than replicas', async () => {
      await moduleRef.close();
      await start({ replicas: 4 });
      const error = await rejection(put('k', 'hello'));
      expect([error.code, error.message]).toEqual([MkvErrorCode.NotEnoughVolumes, 'need 4 volumes but only 3 available']);
      expect(volumes.requests).toEqual([]);
    });
  });

  describe('when a volume fails', () => {
    it('drops a new key whose upload failed on one volume, leaving no blob anywhere', async () => {
      const [, second] = placement.replicasFor('k');
      volumes.failingPuts.set(second, 'after-body');

      const error = await rejection(put('k', 'hello'));
      expect(error).toBeInstanceOf(MkvError);
      expect([error.code, error.message]).toEqual([MkvErrorCode.VolumeWriteFailed, 'not all volume writes succeeded']);
      expect(volumes.contents()).toEqual({});
      expect(await index.get('k')).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);
    });

    // Issue 12: a direct write's blob that cannot be deleted must not be orphaned: it is noted like a DELETE's.
    it('notes for a retry the blob of a failed new key that a volume could not delete, and the retry removes it', async () => {
      const [first, second] = placement.replicasFor('k');
      volumes.failingPuts.set(second, 'after-body');
      volumes.unreachable.add(first); // its DELETE fails

      expect((await rejection(put('k', 'hello'))).code).toBe(MkvErrorCode.VolumeWriteFailed);
      expect(volumes.contents()).toEqual({ [placement.blobUrl('k', first)]: 'hello' });
      expect(await index.get('k')).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);
      expect(await index.pendingDeletes()).toEqual([{ key: 'k', volumes: [first, second] }]);

      volumes.unreachable.clear();
      await keys.retryPendingDeletes();
      expect(volumes.contents()).toEqual({});
      expect(await index.pendingDeletes()).toEqual([]);
    });

    it('drops a small value one volume could not be reached for, leaving no blob anywhere', async () => {
      const [first] = placement.replicasFor('k');
      volumes.failingPuts.set(first, 'before-body');
      expect((await rejection(put('k', 'hello'))).code).toBe(MkvErrorCode.VolumeWriteFailed);
      expect(volumes.contents()).toEqual({});
      expect(await index.get('k')).toBeUndefined();
    });

    it('stops a large upload when a volume refuses it at once', async () => {
      const [first] = placement.replicasFor('k');
      volumes.failingPuts.set(first, 'before-body');
      const chunks = Array.from({ length: 64 }, () => 'y'.repeat(64 * 1024));

      const error = await rejection(writer.put('k', body(...chunks), undefined));
      expect(error.code).toBe(MkvErrorCode.VolumeWriteFailed);
      expect(volumes.contents()).toEqual({});
    });

    it('keeps the old value on every replica when an overwrite upload fails', async () => {
      await put('k', 'hello');
      const before = await index.get('k');
      volumes.failingPuts.set(placement.replicasFor('k')[0], 'after-body');

      expect((await rejection(put('k', 'world'))).code).toBe(MkvErrorCode.VolumeWriteFailed);
      expect(volumes.contents()).toEqual(replicasHolding('k', 'hello'));
      expect(await index.get('k')).toEqual(before);
      expect((await index.get('k'))?.md5).toBe(HELLO_MD5);
    });

    it('keeps the old value when the renames fail on every volume', async () => {
      await put('k', 'hello');
      const before = await index.get('k');
      for (const volume of placement.replicasFor('k')) volumes.failingMoves.set(volume, 500);

      const error = await rejection(put('k', 'world'));
      expect([error.code, error.message]).toEqual([MkvErrorCode.VolumeWriteFailed, 'not all volume writes succeeded']);
      expect(volumes.contents()).toEqual(replicasHolding('k', 'hello'));
      expect(await index.get('k')).toEqual(before);
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('drops a new key whose rename failed on one volume, including the renamed copy', async () => {
      const [, second] = placement.replicasFor('k');
      volumes.failingMoves.set(second, undefined);

      expect((await rejection(writer.put('k', body('x'.repeat(SMALL_VALUE_BYTES + 1)), SMALL_VALUE_BYTES + 1))).code).toBe(MkvErrorCode.VolumeWriteFailed);
      expect(volumes.contents()).toEqual({});
      expect(await index.get('k')).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('keeps index and replicas in agreement when an overwrite was renamed on some volumes only', async () => {
      await put('k', 'hello');
      const [first, second] = placement.replicasFor('k');
      volumes.failingMoves.set(second, 500);

      expect((await rejection(put('k', 'world'))).code).toBe(MkvErrorCode.VolumeWriteFailed);
      expect(volumes.contents()).toEqual({ [placement.blobUrl('k', first)]: 'world' });
      expect(await index.get('k')).toMatchObject({ volumes: [first], md5: WORLD_MD5 });
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('keeps the old value whole when the renames succeeded only on volumes it was not on', async () => {
      // The old value lives on [first, elsewhere] (placed under an older volume list); the
      // new one goes to [first, second]: its rename lands on second only, replacing no old copy.
      await put('k', 'hello');
      const [first, second] = placement.replicasFor('k');
      const [elsewhere] = ['http://a:1', 'http://b:2', 'http://c:3'].filter((v) => v !== first && v !== second);
      volumes.blobs.set(placement.blobUrl('k', elsewhere), volumes.blobs.get(placement.blobUrl('k', second))!);
      volumes.blobs.delete(placement.blobUrl('k', second));
      await index.setVolumes('k', [first, elsewhere]);
      const before = await index.get('k');
      volumes.failingMoves.set(first, 409); // a directory holding a file no key owns stands there

      const error = await rejection(put('k', 'world'));
      expect([error.code, error.message]).toEqual([MkvErrorCode.KeyConflict, 'key k conflicts with an existing path on a volume']);
      expect(volumes.contents()).toEqual({ [placement.blobUrl('k', first)]: 'hello', [placement.blobUrl('k', elsewhere)]: 'hello' });
      expect(await index.get('k')).toEqual(before);
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('reports a conflict when every rename finds a directory the index does not know', async () => {
      // A 409 on the retry too: the directory could not be removed.
      for (const volume of placement.replicasFor('k')) volumes.failingMoves.set(volume, 409);
      const error = await rejection(writer.put('k', body('x'.repeat(SMALL_VALUE_BYTES + 1)), SMALL_VALUE_BYTES + 1));
      expect([error.code, error.message]).toEqual([MkvErrorCode.KeyConflict, 'key k conflicts with an existing path on a volume']);
      expect(volumes.contents()).toEqual({});
      expect(await index.get('k')).toBeUndefined();
    });
  });

  describe(KeyWriter.prototype.recoverPendingWrites.name, () => {
    /** What a crash right after the index transaction leaves: the record, the intent and the uploads. */
    async function crashAfterBegin(key: string, value: string, tempName = 'crashed'): Promise<KeyRecord> {
      const targets = placement.replicasFor(key);
      const tempPath = `${TEMP_DIR}/${tempName}`;
      for (const volume of targets) volumes.blobs.set(volume + tempPath, Buffer.from(value));
      const record: KeyRecord = { key, volumes: targets, size: value.length, md5: HELLO_MD5, state: 'live', createdAt: 7, updatedAt: 7 };
      expect((await index.beginWrite(record, { id: tempName, key, tempPath, volumes: targets, createdAt: 7 })).conflict).toBeUndefined();
      return record;
    }

    it('renames the uploads of an interrupted write into place and drops the intent', async () => {
      const record = await crashAfterBegin('k', 'hello');
      await writer.recoverPendingWrites();

      expect(volumes.contents()).toEqual(replicasHolding('k', 'hello'));
      expect(await index.pendingWrites()).toEqual([]);
      expect(await index.get('k')).toEqual(record);
      await expect(keys.locate('k')).resolves.toMatchObject({ url: placement.blobUrl('k', record.volumes[0]) });
    });

    it('counts an upload already gone as renamed before the crash', async () => {
      const record = await crashAfterBegin('k', 'hello');
      const [first] = record.volumes;
      await volumes.move(first + `${TEMP_DIR}/crashed`, placement.blobUrl('k', first));

      await writer.recoverPendingWrites();
      expect(volumes.contents()).toEqual(replicasHolding('k', 'hello'));
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('drops the intent of a key that was deleted since', async () => {
      await crashAfterBegin('k', 'hello');
      await index.beginDelete('k');
      await writer.recoverPendingWrites();
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('leaves a directory holding a file no key owns where the upload should go, and keeps the intent for the next start', async () => {
      const record = await crashAfterBegin('a', 'hello');
      // The fake volume models a directory by what is under it: an unindexed file below `a/`.
      const stray = `${placement.blobUrl('a', record.volumes[0])}/b`;
      volumes.blobs.set(stray, Buffer.from('left behind'));
      await writer.recoverPendingWrites();
      expect(await index.pendingWrites()).toHaveLength(1);
      expect(volumes.contents()[stray]).toBe('left behind');
    });

    /** What a crash during a new key's direct write leaves: the intent, no record, the blobs at the key's paths. */
    async function crashDuringDirectWrite(key: string, value: string): Promise<string[]> {
      const targets = placement.replicasFor(key);
      expect(await index.beginDirectWrite!({ id: 'direct', key, tempPath: DIRECT_WRITE, volumes: targets, createdAt: 7 })).toBeUndefined();
      for (const volume of targets) volumes.blobs.set(placement.blobUrl(key, volume), Buffer.from(value));
      return targets;
    }

    it('deletes the blobs of a new key whose direct write never got its record, and drops the intent', async () => {
      await crashDuringDirectWrite('k', 'hello');
      await writer.recoverPendingWrites();
      expect(volumes.contents()).toEqual({});
      expect(volumes.requests.filter((r) => r.startsWith('MOVE '))).toEqual([]);
      expect(await index.get('k')).toBeUndefined();
      expect(await index.pendingWrites()).toEqual([]);
      expect(await index.pendingDeletes()).toEqual([]);
    });

    it('keeps the blobs of a direct write\'s key that has a record (written since), dropping only the intent', async () => {
      await crashDuringDirectWrite('k', 'hello');
      await storeFinished(index, { key: 'k', volumes: placement.replicasFor('k'), size: 5, md5: HELLO_MD5, state: 'live', createdAt: 8, updatedAt: 8 });
      await writer.recoverPendingWrites();
      expect(volumes.contents()).toEqual(replicasHolding('k', 'hello'));
      expect(await index.pendingWrites()).toEqual([]);
    });

    it('notes the blobs of an unfinished direct write for a retry while a volume is unreachable', async () => {
      const targets = await crashDuringDirectWrite('k', 'hello');
      volumes.unreachable.add(targets[1]);
      await writer.recoverPendingWrites();
      expect(await index.pendingWrites()).toEqual([]);
      expect(await index.pendingDeletes()).toEqual([{ key: 'k', volumes: targets }]);
      expect(volumes.contents()).toEqual({ [placement.blobUrl('k', targets[1])]: 'hello' });
    });

    it('keeps the intent for the next start while a volume is unreachable', async () => {
      const record = await crashAfterBegin('k', 'hello');
      volumes.failingMoves.set(record.volumes[1], undefined);

      await writer.recoverPendingWrites();
      expect(await index.pendingWrites()).toHaveLength(1);
      expect(volumes.tempUrls()).toEqual([record.volumes[1] + `${TEMP_DIR}/crashed`]);

      volumes.failingMoves.clear();
      await writer.recoverPendingWrites();
      expect(await index.pendingWrites()).toEqual([]);
      expect(volumes.contents()).toEqual(replicasHolding('k', 'hello'));
    });
  });
});
