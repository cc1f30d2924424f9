import Database from 'better-sqlite3';
import { mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { blobUrl, placeKey, subvolumeDir, subvolumeOf } from '../src/hashing/rendezvous';
import type { JobView } from '../src/admin/jobs/job';
import { http, keyUrl, md5 } from './support/http';
import { IndexRow, readIndexRows } from './support/index-rows';
import { jobAt, jobFinished } from './support/jobs';
import { pollUntil } from './support/poll-until';
import { TestServer } from './support/server';
import { TestVolume, TestVolumes, stopServerAndVolumes } from './support/volumes';

type Row = Pick<IndexRow, 'key' | 'volumes' | 'size' | 'state'>;

/** Keys a filesystem path or a URL could get wrong. */
const AWKWARD_KEYS = [
  'plain',
  '日本/語/😀.txt',
  'with space/and more spaces.txt',
  'percent/100%/a%2Bb',
  'percent/%zz and %',
  'd1/d2/d3/d4/d5/d6/d7/d8/d9/deep leaf.bin',
  "chars/a+b=c&d;e,f@g!h$i'j(k)l*m",
  'ünïcödé/ñandú',
  'sv0A/a first segment that looks like a subvolume',
  ...Array.from({ length: 12 }, (_, i) => `bulk/${i % 3}/item-${i}`),
];


const placementView = (rows: IndexRow[]): Row[] => rows.map(({ key, volumes, size, state }) => ({ key, volumes, size, state }));

/** Staging tables and tracking triggers a rebuild should have dropped when it ended. */
function rebuildLeftovers(dbPath: string): string[] {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const names = db.prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger', 'index')").all() as { name: string }[];
    return names.map((r) => r.name).filter((name) => /rebuild/.test(name));
  } finally {
    db.close();
  }
}

/** What a volume holds, key -> size, as files on its disk (dot-names are mkv's and nginx's own). */
function filesOn(volume: TestVolume, subvolumes = 1): Map<string, number> {
  const found = new Map<string, number>();
  const walk = (dir: string, prefix: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path, `${prefix}${entry.name}/`);
      else found.set(`${prefix}${entry.name}`, statSync(path).size);
    }
  };
  if (subvolumes > 1) {
    for (const sv of readdirSync(volume.dataDir).filter((name) => /^sv[0-9A-F]{2}$/.test(name))) walk(join(volume.dataDir, sv), '');
  } else {
    walk(volume.dataDir, '');
  }
  return found;
}

/** The blob's path on one volume, relative to its data directory. */
const blobPath = (key: string, volume: string, subvolumes: number) =>
  subvolumes > 1 ? `${subvolumeDir(subvolumeOf(key, volume, subvolumes)).slice(1)}/${key}` : key;

function removeIndex(dbPath: string): void {
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true });
}

async function startJob(server: TestServer, path = '/_admin/rebuild'): Promise<string> {
  const res = await http('POST', `${server.url}${path}`);
  expect(res.status).toBe(202);
  const job = JSON.parse(res.text) as JobView;
  expect(res.headers.location).toBe(`/_admin/jobs/${job.id}`);
  return res.headers.location;
}

function finished(server: TestServer, location: string): Promise<JobView> {
  return jobFinished(server.url, location, 20_000);
}

async function rebuild(server: TestServer): Promise<JobView> {
  return finished(server, await startJob(server));
}

const valueOf = (key: string, i: number) => Buffer.from(`${key}\n`.repeat(i + 1));

/** POST /_admin/rebuild against real nginx volumes and a real SQLite file. */
describe('rebuild', () => {
  describe.each([1, 16])('after the index is lost (%i subvolumes)', (subvolumes) => {
    let volumes: TestVolumes;
    let server: TestServer;
    let dir: string;

    beforeAll(async () => {
      volumes = await TestVolumes.start(3);
      dir = join(volumes.root, 'index');
      server = await TestServer.start({ volumes: volumes.urls, replicas: 2, subvolumes, dir });
    });
    afterAll(() => stopServerAndVolumes(server, volumes));

    it('gives back exactly the same keys, volumes in placement order, sizes and states', async () => {
      for (const [i, key] of AWKWARD_KEYS.entries()) {
        expect((await http('PUT', keyUrl(server.url, key), { body: valueOf(key, i) })).status).toBe(201);
      }
      const before = placementView(readIndexRows(server.dbPath));
      expect(before.map((r) => r.key).sort()).toEqual([...AWKWARD_KEYS].sort());
      for (const row of before) expect(row.volumes).toBe(placeKey(row.key, volumes.urls, 2).join(','));
      for (const volume of volumes.list) {
        for (const [key, size] of filesOn(volume, subvolumes)) expect(before.find((r) => r.key === key)?.size).toBe(size);
      }

      await server.stop();
      removeIndex(join(dir, 'index.db'));
      server = await TestServer.start({ volumes: volumes.urls, replicas: 2, subvolumes, dir });
      expect(readIndexRows(server.dbPath)).toEqual([]);

      const job = await rebuild(server);
      expect(job).toMatchObject({ kind: 'rebuild', state: 'succeeded', errors: [] });
      expect(job.counters).toMatchObject({ scanned: AWKWARD_KEYS.length * 2, moved: AWKWARD_KEYS.length, skipped: 0, failed: 0 });
      expect(placementView(readIndexRows(server.dbPath))).toEqual(before);
      expect(rebuildLeftovers(server.dbPath)).toEqual([]);
    });

    it('serves the rebuilt keys: GET redirects to the first replica, HEAD has the size', async () => {
      for (const [i, key] of AWKWARD_KEYS.entries()) {
        const value = valueOf(key, i);
        const res = await http('GET', keyUrl(server.url, key));
        expect(res.status).toBe(302);
        expect(res.headers.location).toBe(blobUrl(key, placeKey(key, volumes.urls, 2)[0], subvolumes));
        const followed = await http('GET', res.headers.location);
        expect(followed.status).toBe(200);
        expect(followed.body.equals(value)).toBe(true);
        const head = await http('HEAD', keyUrl(server.url, key));
        expect(head.status).toBe(200);
        expect(head.headers['content-length']).toBe(String(value.length));
      }
      const listed = await http('GET', `${server.url}/?prefix=bulk/`);
      expect(JSON.parse(listed.text).keys).toHaveLength(12);
    });

    it('keeps each blob where placement put it (subvolume directories included)', () => {
      for (const key of AWKWARD_KEYS) {
        for (const url of placeKey(key, volumes.urls, 2)) expect(volumes.byUrl(url).has(blobPath(key, url, subvolumes))).toBe(true);
      }
    });
  });

  describe('on a live index', () => {
    let volumes: TestVolumes;
    let server: TestServer;
    const replicasOf = (key: string) => placeKey(key, volumes.urls, 2).map((url) => volumes.byUrl(url));
    const put = async (key: string, body: string) => expect((await http('PUT', keyUrl(server.url, key), { body })).status).toBe(201);
    /** Files on the volumes the index does not list, as `<volume> <key>`. */
    const unindexedCopies = () => {
      const listed = new Set(readIndexRows(server.dbPath).flatMap((row) => row.volumes.split(',').map((url) => `${url} ${row.key}`)));
      return volumes.list.flatMap((v) => [...filesOn(v).keys()].map((key) => `${v.url} ${key}`)).filter((copy) => !listed.has(copy));
    };

    beforeAll(async () => {
      volumes = await TestVolumes.start(3);
      server = await TestServer.start({ volumes: volumes.urls, replicas: 2 });
    });
    afterAll(() => stopServerAndVolumes(server, volumes));

    it('keeps unlinked keys unlinked and MD5s of unchanged sizes; drops keys whose blobs are gone', async () => {
      await put('live/keep', 'keep me');
      await put('live/unlinked', 'hidden but kept');
      expect((await http('UNLINK', keyUrl(server.url, 'live/unlinked'))).status).toBe(204);
      await put('live/vanished', 'removed behind mkv');
      await put('live/half-lost', 'one replica removed');
      await put('live/resized', 'short');
      await put('live/diverged-first', 'same old');
      await put('live/diverged-second', 'same old');
      const before = new Map(readIndexRows(server.dbPath).map((row) => [row.key, row]));

      for (const volume of replicasOf('live/vanished')) rmSync(volume.filePath('live/vanished'));
      const [kept, lost] = replicasOf('live/half-lost');
      rmSync(lost.filePath('live/half-lost'));
      // Rewritten on both replicas behind mkv's back.
      for (const volume of replicasOf('live/resized')) writeFileSync(volume.filePath('live/resized'), 'a longer value now');
      // Rewritten on one replica only: the newer copy wins, whichever volume is walked first.
      const walkOrder = (key: string) => [...replicasOf(key)].sort((a, b) => volumes.list.indexOf(a) - volumes.list.indexOf(b));
      const [newerFirst, olderSecond] = walkOrder('live/diverged-first');
      const [olderFirst, newerSecond] = walkOrder('live/diverged-second');
      const hourAgo = new Date(Date.now() - 3600_000);
      const diverging = [
        ['live/diverged-first', newerFirst, olderSecond],
        ['live/diverged-second', newerSecond, olderFirst],
      ] as const;
      for (const [key, newer, older] of diverging) {
        writeFileSync(newer.filePath(key), 'the new value');
        utimesSync(older.filePath(key), hourAgo, hourAgo);
      }

      const job = await rebuild(server);
      expect(job.state).toBe('succeeded');

      const after = new Map(readIndexRows(server.dbPath).map((row) => [row.key, row]));
      expect([...after.keys()].sort()).toEqual([
        'live/diverged-first',
        'live/diverged-second',
        'live/half-lost',
        'live/keep',
        'live/resized',
        'live/unlinked',
      ]);

      expect(after.get('live/keep')).toMatchObject({ state: 'live', md5: md5('keep me'), size: 7 });
      expect(after.get('live/keep')!.created_at).toBe(before.get('live/keep')!.created_at);
      const head = await http('HEAD', keyUrl(server.url, 'live/keep'));
      expect(head.headers['content-md5']).toBe(md5('keep me'));
      expect(head.headers.etag).toBe(`"${md5('keep me')}"`);

      expect(after.get('live/unlinked')).toMatchObject({ state: 'unlinked', md5: md5('hidden but kept') });
      expect((await http('GET', keyUrl(server.url, 'live/unlinked'))).status).toBe(404);
      expect(JSON.parse((await http('GET', `${server.url}/live?unlinked`)).text).keys).toEqual(['/live/unlinked']);

      expect((await http('GET', keyUrl(server.url, 'live/vanished'))).status).toBe(404);

      expect(after.get('live/half-lost')).toMatchObject({ volumes: kept.url, md5: md5('one replica removed') });
      expect((await http('GET', keyUrl(server.url, 'live/half-lost'))).headers.location).toBe(`${kept.url}/live/half-lost`);

      // The size changed, so the old MD5 no longer describes the value.
      expect(after.get('live/resized')!.size).toBe('a longer value now'.length);
      expect(after.get('live/resized')!.md5).not.toBe(md5('short'));
      expect((await http('HEAD', keyUrl(server.url, 'live/resized'))).headers['content-length']).toBe(String('a longer value now'.length));

      expect(after.get('live/diverged-first')).toMatchObject({ volumes: newerFirst.url, size: 'the new value'.length });
      expect(after.get('live/diverged-second')).toMatchObject({ volumes: newerSecond.url, size: 'the new value'.length });
      const diverged = await http('GET', keyUrl(server.url, 'live/diverged-second'));
      expect((await http('GET', diverged.headers.location)).text).toBe('the new value');
    });

    it('lists the job; a success is at 100% and counts every key it indexed as moved', async () => {
      const location = await startJob(server);
      const job = await finished(server, location);
      const keys = readIndexRows(server.dbPath).length;
      expect(job.state).toBe('succeeded');
      expect(job.progress.percent).toBe(100);
      expect(job.counters.moved).toBe(keys);
      expect(job.startedAt).not.toBeNull();
      expect(Date.parse(job.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(job.startedAt!));

      const list = JSON.parse((await http('GET', `${server.url}/_admin/jobs`)).text) as { jobs: JobView[] };
      expect(list.jobs[0]).toEqual(job); // newest first
      expect(list.jobs.filter((j) => j.kind === 'rebuild')).toHaveLength(2);
    });

    it('refuses a query parameter it does not know, and starts nothing', async () => {
      const before = (JSON.parse((await http('GET', `${server.url}/_admin/jobs`)).text) as { jobs: JobView[] }).jobs.length;
      const res = await http('POST', `${server.url}/_admin/rebuild?dryRun=true`);
      expect(res.status).toBe(400);
      expect(res.text).toBe('unknown parameter dryRun');
      expect((JSON.parse((await http('GET', `${server.url}/_admin/jobs`)).text) as { jobs: JobView[] }).jobs).toHaveLength(before);
    });

    it('with a volume down fails naming the volume and leaves the serving index as it was', async () => {
      await put('down/a', 'aaa');
      await put('down/b', 'bbbb');
      const before = readIndexRows(server.dbPath);
      const down = volumes.list[1];
      await down.stop();
      try {
        const job = await rebuild(server);
        expect(job.state).toBe('failed');
        expect(job.error).toContain(down.url);
        expect(readIndexRows(server.dbPath)).toEqual(before);
        expect(rebuildLeftovers(server.dbPath)).toEqual([]);
        const res = await http('HEAD', keyUrl(server.url, 'down/b'));
        expect(res.headers['content-md5']).toBe(md5('bbbb'));
      } finally {
        await down.start();
      }
      // Nothing was left half-done: the next rebuild runs normally.
      expect((await rebuild(server)).state).toBe('succeeded');
      expect(placementView(readIndexRows(server.dbPath))).toEqual(placementView(before));
    });

    it('does not add a stray copy of the same size on a volume the index did not list for the key; the stray stays on disk', async () => {
      // Before, the rebuild listed all three volumes with the first MD5, and
      // a GET could be sent to the stray's other bytes.
      const key = 'stray/same-size';
      const value = 'the real value';
      const stray = 'a stray copy!!'; // same length, other bytes
      await server.settleHealth(); // the test before stopped a volume
      await put(key, value);
      const replicas = replicasOf(key);
      const third = volumes.list.find((v) => !replicas.includes(v))!;
      mkdirSync(third.filePath('stray'), { recursive: true });
      writeFileSync(third.filePath(key), stray);

      const job = await rebuild(server);
      expect(job.state).toBe('succeeded');
      const row = readIndexRows(server.dbPath).find((r) => r.key === key);
      expect(row).toMatchObject({ volumes: replicas.map((v) => v.url).join(','), md5: md5(value), size: value.length });
      // Every copy found is indexed or counted skipped (copies earlier tests left behind, and the stray).
      expect(unindexedCopies()).toContain(`${third.url} ${key}`);
      expect(job.counters.skipped).toBe(unindexedCopies().length);
      expect(third.read(key).toString()).toBe(stray);
      const res = await http('GET', keyUrl(server.url, key));
      expect(res.status).toBe(302);
      expect(replicas.map((v) => `${v.url}/${key}`)).toContain(res.headers.location);
      expect((await http('GET', res.headers.location)).text).toBe(value);
      rmSync(third.filePath(key));
    });

    it('adopts a copy on another volume when none of the known replicas is left, without the old MD5', async () => {
      const key = 'stray/only-copy';
      const value = 'the old value';
      const found = 'other content'; // same length: only the bytes tell them apart
      await put(key, value);
      const replicas = replicasOf(key);
      const third = volumes.list.find((v) => !replicas.includes(v))!;
      for (const volume of replicas) rmSync(volume.filePath(key));
      mkdirSync(third.filePath('stray'), { recursive: true });
      writeFileSync(third.filePath(key), found);

      const job = await rebuild(server);
      expect(job.state).toBe('succeeded');
      expect(unindexedCopies()).not.toContain(`${third.url} ${key}`);
      expect(job.counters.skipped).toBe(unindexedCopies().length);

      // No MD5 is better than a wrong one: the old value's would describe bytes that are not there.
      const row = readIndexRows(server.dbPath).find((r) => r.key === key);
      expect(row).toMatchObject({ volumes: third.url, md5: '', size: found.length, state: 'live' });
      const head = await http('HEAD', keyUrl(server.url, key));
      expect(head.headers['content-md5']).toBeUndefined();
      const res = await http('GET', keyUrl(server.url, key));
      expect(res.headers.location).toBe(`${third.url}/${key}`);
      expect((await http('GET', res.headers.location)).text).toBe(found);
    });
  });

  describe('with writes while it runs', () => {
    let volumes: TestVolumes;
    let server: TestServer;
    const FILLER = 900;

    beforeAll(async () => {
      volumes = await TestVolumes.start(3);
      server = await TestServer.start({ volumes: volumes.urls, replicas: 2 });
      // Blobs the index does not know, one directory each, put straight on disk
      // where placement wants them: enough listings that the walk takes a while.
      for (let i = 0; i < FILLER; i++) {
        const key = `filler/${i}/blob`;
        for (const url of placeKey(key, volumes.urls, 2)) {
          mkdirSync(volumes.byUrl(url).filePath(`filler/${i}`), { recursive: true });
          writeFileSync(volumes.byUrl(url).filePath(key), `filler ${i}`);
        }
      }
    });
    afterAll(() => stopServerAndVolumes(server, volumes));

    it('lets a PUT, DELETE and UNLINK made during the rebuild win, and the index ends agreeing with the volumes', async () => {
      for (const key of ['during/overwrite', 'during/delete', 'during/unlink']) {
        expect((await http('PUT', keyUrl(server.url, key), { body: `old ${key}` })).status).toBe(201);
      }

      const location = await startJob(server);
      // Wait until the walk is under way (a volume listed), then write.
      await pollUntil(async () => {
        const job = await jobAt(server.url, location);
        return job.progress.phase === 'listing volumes' && job.progress.done >= 1 ? true : undefined;
      });
      const [overwrite, del, created, unlink] = await Promise.all([
        http('PUT', keyUrl(server.url, 'during/overwrite'), { body: 'a new and longer value' }),
        http('DELETE', keyUrl(server.url, 'during/delete')),
        http('PUT', keyUrl(server.url, 'during/new'), { body: 'born during the rebuild' }),
        http('UNLINK', keyUrl(server.url, 'during/unlink')),
      ]);
      expect([overwrite.status, del.status, created.status, unlink.status]).toEqual([204, 204, 201, 204]);
      // The writes really overlapped the job.
      expect((await jobAt(server.url, location)).state).toBe('running');

      const job = await finished(server, location);
      expect(job.state).toBe('succeeded');

      const rows = new Map(readIndexRows(server.dbPath).map((row) => [row.key, row]));
      expect(rows.has('during/delete')).toBe(false);
      expect((await http('GET', keyUrl(server.url, 'during/delete'))).status).toBe(404);
      expect(rows.get('during/overwrite')).toMatchObject({ md5: md5('a new and longer value'), size: 22, state: 'live' });
      expect((await http('HEAD', keyUrl(server.url, 'during/overwrite'))).headers['content-md5']).toBe(md5('a new and longer value'));
      expect(rows.get('during/new')).toMatchObject({ md5: md5('born during the rebuild'), state: 'live' });
      expect(rows.get('during/unlink')).toMatchObject({ state: 'unlinked' });
      expect(rows.size).toBe(FILLER + 3);

      // Both ways: every replica the index names is on its volume with that size, and nothing else is.
      const indexed = new Set<string>();
      for (const row of rows.values()) {
        expect(row.volumes).toBe(placeKey(row.key, volumes.urls, 2).join(','));
        for (const url of row.volumes.split(',')) indexed.add(`${url} ${row.key} ${row.size}`);
      }
      const onDisk = new Set(volumes.list.flatMap((v) => [...filesOn(v)].map(([key, size]) => `${v.url} ${key} ${size}`)));
      expect([...onDisk].sort()).toEqual([...indexed].sort());
    });
  });
});
