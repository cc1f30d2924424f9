import { Test, TestingModule } from '@nestjs/testing';
import { MkvError, MkvErrorCode } from '../common/mkv-error';
import { ConfigModule } from '../config/config.module';
import { ConfigInput, loadConfig } from '../config/load-config';
import { PLACEMENT, Placement } from '../hashing/placement';
import { RendezvousPlacement } from '../hashing/rendezvous-placement.service';
import { VolumeHealth } from '../health/volume-health.service';
import { SqliteIndexModule } from '../index/sqlite/sqlite-index.module';
import { KEY_INDEX, KeyIndex } from '../index/key-index';
import type { KeyRecord } from '../index/key-record';
import { InMemoryVolumeClient } from '../../test/support/in-memory-volume.client';
import { VOLUME_CLIENT } from '../volumes/volume-client';
import { KeyLocks } from '../replicas/key-locks';
import { KeysService } from './keys.service';
import { ReplicaFiles } from '../replicas/replica-files.service';
import { rejection } from '../../test/support/rejection';


describe(KeysService.name, () => {
  let moduleRef: TestingModule;
  let keys: KeysService;
  let locks: KeyLocks;
  let index: KeyIndex;
  let placement: Placement;
  let volumes: InMemoryVolumeClient;

  async function start(overrides: ConfigInput = {}): Promise<void> {
    const config = loadConfig({ db: ':memory:', volumes: 'a:1,b:2,c:3', replicas: 2, ...overrides });
    volumes = new InMemoryVolumeClient();
    moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot(config), SqliteIndexModule],
      providers: [KeyLocks, ReplicaFiles, KeysService, RendezvousPlacement, { provide: PLACEMENT, useExisting: RendezvousPlacement }, VolumeHealth, { provide: VOLUME_CLIENT, useValue: volumes }],
    }).compile();
    moduleRef.useLogger(false); // a blob left behind is logged as a warning by design
    keys = moduleRef.get(KeysService);
    locks = moduleRef.get(KeyLocks);
    index = moduleRef.get<KeyIndex>(KEY_INDEX);
    placement = moduleRef.get<Placement>(PLACEMENT);
  }

  beforeEach(() => start());

  afterEach(async () => {
    // KeysService reads and deletes; it never writes a blob.
    expect(volumes.requests.filter((request) => /^(PUT|MOVE) /.test(request))).toEqual([]);
    await moduleRef.close();
  });

  /** A key as a finished PUT leaves it: the record in the index, the blob on each replica. */
  async function seed(key: string, overrides: Partial<KeyRecord> = {}): Promise<KeyRecord> {
    const record: KeyRecord = {
      key,
      volumes: placement.replicasFor(key),
      size: 5,
      md5: '5d41402abc4b2a76b9719d911017c592',
      state: 'live',
      createdAt: 1000,
      updatedAt: 2000,
      ...overrides,
    };
    const intent = { id: `seed-${key}`, key, tempPath: `/.mkv-tmp/seed-${key}`, volumes: record.volumes, createdAt: 1000 };
    expect((await index.beginWrite(record, intent)).conflict).toBeUndefined();
    await index.finishWrite(intent.id, record);
    for (const volume of record.volumes) volumes.blobs.set(placement.blobUrl(key, volume), Buffer.from('hello'));
    return record;
  }

  function expectError(error: MkvError, code: MkvErrorCode, message: string): void {
    expect(error).toBeInstanceOf(MkvError);
    expect([error.code, error.message]).toEqual([code, message]);
  }

  describe('locate', () => {
    it('points a live key at its first replica', async () => {
      const record = await seed('dir/file name.txt');
      await expect(keys.locate('dir/file name.txt')).resolves.toEqual({
        url: `${record.volumes[0]}/dir/file%20name.txt`,
        record,
      });
    });

    it('returns 404 for an unknown key', async () => {
      expectError(await rejection(keys.locate('missing')), MkvErrorCode.NotFound, 'not found');
    });

    it('returns 404 for an unlinked key', async () => {
      await seed('k');
      await keys.unlink('k');
      expectError(await rejection(keys.locate('k')), MkvErrorCode.NotFound, 'not found');
      expectError(await rejection(keys.stat('k')), MkvErrorCode.NotFound, 'not found');
    });

    it('sends an unknown or unlinked key to the fallback server', async () => {
      await moduleRef.close();
      await start({ fallback: 'http://old.example:3000/' });
      await seed('gone');
      await keys.unlink('gone');

      await expect(keys.locate('sp ace/日')).resolves.toEqual({ url: 'http://old.example:3000/sp%20ace/%E6%97%A5' });
      await expect(keys.locate('gone')).resolves.toEqual({ url: 'http://old.example:3000/gone' });
    });

    it('reports a record without volumes as corrupt', async () => {
      await seed('k', { volumes: [] });
      expectError(await rejection(keys.locate('k')), MkvErrorCode.CorruptRecord, 'corrupt record for key k: no volumes');
    });
  });

  it('returns the live record from stat', async () => {
    const record = await seed('k');
    await expect(keys.stat('k')).resolves.toEqual(record);
  });

  describe('delete', () => {
    it('removes the record and the blob on every replica', async () => {
      await seed('k');
      await seed('other');
      await keys.delete('k');

      expect(await index.get('k')).toBeUndefined();
      expect([...volumes.blobs.keys()].sort()).toEqual(
        placement.replicasFor('other').map((volume) => placement.blobUrl('other', volume)).sort(),
      );
    });

    it('deletes an unlinked key too', async () => {
      await seed('k', { state: 'unlinked' });
      await keys.delete('k');
      expect(await index.get('k')).toBeUndefined();
      expect(volumes.blobs.size).toBe(0);
    });

    it('returns 404 for an unknown key', async () => {
      expectError(await rejection(keys.delete('missing')), MkvErrorCode.NotFound, 'not found');
    });

    it('still removes the record when a volume cannot delete its blob', async () => {
      const record = await seed('k');
      volumes.unreachable.add(record.volumes[1]);
      await keys.delete('k');

      expect(await index.get('k')).toBeUndefined();
      expect([...volumes.blobs.keys()]).toEqual([placement.blobUrl('k', record.volumes[1])]);
    });

    it('notes a blob it could not delete, and removes it when retried with the volume back', async () => {
      const record = await seed('k');
      volumes.unreachable.add(record.volumes[1]);
      await keys.delete('k');
      expect(await index.pendingDeletes()).toEqual([{ key: 'k', volumes: record.volumes }]);

      await keys.retryPendingDeletes(); // still down: kept for the next try
      expect(await index.pendingDeletes()).toHaveLength(1);
      volumes.unreachable.clear();
      await keys.retryPendingDeletes();
      expect(await index.pendingDeletes()).toEqual([]);
      expect(volumes.blobs.size).toBe(0);
    });

    it('leaves no note once every blob is deleted', async () => {
      await seed('k');
      await keys.delete('k');
      expect(await index.pendingDeletes()).toEqual([]);
    });

    it('waits for a change to the same key that is running', async () => {
      await seed('k');
      let release!: () => void;
      const running = locks.run('k', () => new Promise<void>((resolve) => (release = resolve)));
      const deleting = keys.delete('k');
      await new Promise((resolve) => setImmediate(resolve));
      expect(await index.get('k')).toBeDefined();

      release();
      await Promise.all([running, deleting]);
      expect(await index.get('k')).toBeUndefined();
    });

    describe('in protect mode', () => {
      beforeEach(async () => {
        await moduleRef.close();
        await start({ protect: true });
      });

      it('refuses to delete a live key and keeps it', async () => {
        await seed('k');
        expectError(await rejection(keys.delete('k')), MkvErrorCode.MustUnlinkFirst, 'key must be unlinked before delete');
        expect((await index.get('k'))?.state).toBe('live');
        expect(volumes.blobs.size).toBe(2);
      });

      it('deletes a key once it is unlinked', async () => {
        await seed('k');
        await keys.unlink('k');
        await keys.delete('k');
        expect(await index.get('k')).toBeUndefined();
        expect(volumes.blobs.size).toBe(0);
      });
    });
  });

  /** Issue 10: undone deletes are retried while serving (a volume back up, every minute), beside requests. */
  describe('retryPendingDeletes', () => {
    /** A key deleted while one of its volumes could not be reached; the volume is back. */
    async function undoneDelete(key: string): Promise<KeyRecord> {
      const record = await seed(key);
      volumes.unreachable.add(record.volumes[1]);
      await keys.delete(key);
      volumes.unreachable.clear();
      return record;
    }
    const deletesSent = () => volumes.requests.filter((request) => request.startsWith('DELETE ')).length;
    /** Holds the key's lock, as a request on it would, until released. */
    function holdLock(key: string): { release: () => void; held: Promise<void> } {
      let release!: () => void;
      const held = locks.run(key, () => new Promise<void>((resolve) => (release = resolve)));
      return { release: () => release(), held };
    }
    const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

    it('runs one pass at a time: a call during a pass joins it, and the pass runs once more', async () => {
      await undoneDelete('k');
      const sentBefore = deletesSent();
      const lock = holdLock('k');
      const first = keys.retryPendingDeletes();
      const second = keys.retryPendingDeletes();
      expect(second).toBe(first);
      lock.release();
      await Promise.all([first, lock.held]);
      expect(await index.pendingDeletes()).toEqual([]);
      expect(deletesSent() - sentBefore).toBe(2); // one DELETE per replica: the second round found nothing left to do
    });

    it('leaves a key alone while one of its volumes is slow or down, and finishes it once the volume is up', async () => {
      const record = await undoneDelete('k');
      const health = moduleRef.get(VolumeHealth);
      const timeout = { error: 'no answer within 1000 ms', timedOut: true };
      health.recordProbe(record.volumes[1], timeout);
      health.recordProbe(record.volumes[1], timeout);
      const sentBefore = deletesSent();
      await keys.retryPendingDeletes();
      expect(deletesSent()).toBe(sentBefore); // no request that would hold the key's lock until a timeout
      expect(await index.pendingDeletes()).toHaveLength(1);

      health.recordProbe(record.volumes[1], { latencyMs: 1 });
      health.recordProbe(record.volumes[1], { latencyMs: 1 });
      await keys.retryPendingDeletes();
      expect(await index.pendingDeletes()).toEqual([]);
      expect(volumes.blobs.size).toBe(0);
    });

    it('never deletes the blobs of a key written again after the pass read its list', async () => {
      await undoneDelete('k');
      const lock = holdLock('k'); // a PUT of k is committing
      const retrying = keys.retryPendingDeletes();
      await settle(); // the pass has read the list and waits for the key's lock
      const rewritten = await seed('k');
      lock.release();
      await Promise.all([retrying, lock.held]);
      expect((await index.get('k'))?.state).toBe('live');
      for (const volume of rewritten.volumes) expect(volumes.blobs.has(placement.blobUrl('k', volume))).toBe(true);
    });
  });

  describe('unlink', () => {
    it('marks the key unlinked and keeps its blobs', async () => {
      await seed('k');
      const before = Date.now();
      await keys.unlink('k');

      const record = await index.get('k');
      expect(record?.state).toBe('unlinked');
      expect(record!.updatedAt).toBeGreaterThanOrEqual(before);
      expect(volumes.blobs.size).toBe(2);
    });

    it('returns 404 for an unknown or already unlinked key', async () => {
      expectError(await rejection(keys.unlink('missing')), MkvErrorCode.NotFound, 'not found');
      await seed('k', { state: 'unlinked' });
      expectError(await rejection(keys.unlink('k')), MkvErrorCode.NotFound, 'not found');
    });
  });

  describe('list', () => {
    beforeEach(async () => {
      for (const key of ['p/1', 'p/2', 'p/3', 'q/1']) await seed(key);
      await seed('p/0', { state: 'unlinked' });
    });

    it('returns a full page and the start of the next one', async () => {
      await expect(keys.list({ prefix: 'p/', limit: 2, state: 'live' })).resolves.toEqual({ keys: ['p/1', 'p/2'], next: 'p/3' });
      await expect(keys.list({ prefix: 'p/', start: 'p/3', limit: 2, state: 'live' })).resolves.toEqual({ keys: ['p/3'], next: '' });
    });

    it('returns an empty next when the page holds the last key exactly', async () => {
      await expect(keys.list({ prefix: 'p/', limit: 3, state: 'live' })).resolves.toEqual({ keys: ['p/1', 'p/2', 'p/3'], next: '' });
    });

    it('lists unlinked keys apart', async () => {
      await expect(keys.list({ prefix: '', limit: 10, state: 'unlinked' })).resolves.toEqual({ keys: ['p/0'], next: '' });
    });
  });
});
