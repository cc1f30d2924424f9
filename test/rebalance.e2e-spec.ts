import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { blobUrl, placeKey } from '../src/hashing/rendezvous';
import { TERMINAL_STATES, type JobView, type PlannedMove } from '../src/admin/jobs/job';
import { ServerProcess } from './support/cli';
import { http, keyUrl, md5, type TestResponse } from './support/http';
import { readIndexRows } from './support/index-rows';
import { jobFinished } from './support/jobs';
import { pollUntil } from './support/poll-until';
import { TestServer } from './support/server';
import { freePort, TestVolume, TestVolumes } from './support/volumes';

const R = 2;

type Values = Map<string, Buffer>;


/** Real nginx volumes and the real server over one SQLite file that outlives restarts. */
class Cluster {
  server!: TestServer;
  /** The volume list the server runs with now. */
  urls: string[] = [];

  private constructor(readonly volumes: TestVolumes) {}

  static async start(volumeCount: number): Promise<Cluster> {
    const cluster = new Cluster(await TestVolumes.start(volumeCount));
    try {
      await cluster.serve(cluster.volumes.urls);
    } catch (error) {
      await cluster.volumes.stop();
      throw error;
    }
    return cluster;
  }

  /** Inside the volumes' temp root, so `volumes.stop()` removes it too. */
  get indexDir(): string {
    return join(this.volumes.root, 'index');
  }

  /** Starts the server (again) over the same index with this volume list: how an operator changes the topology. */
  async serve(urls: string[]): Promise<void> {
    await this.server?.stop();
    this.server = await TestServer.start({ volumes: urls, replicas: R, dir: this.indexDir });
    this.urls = [...urls];
  }

  async stop(): Promise<void> {
    try {
      await this.server?.stop();
    } finally {
      await this.volumes.stop();
    }
  }
}

/** Keys spread over a few directories with distinct random values, plus keys that need percent-encoding on a volume. */
function makeValues(count: number): Values {
  const values: Values = new Map();
  for (let i = 0; i < count; i++) values.set(`k/${i % 7}/${String(i).padStart(4, '0')}`, randomBytes(512 + ((i * 997) % 4096)));
  for (const key of ['unicode/日本語/ñandú', "chars/a+b=c&d;e,f@g!h$i'j(k)l*m", 'percent/100%/a%2Bb', 'spaces/with space.txt']) {
    values.set(key, randomBytes(3000));
  }
  values.set('big/one', randomBytes(2 << 20)); // a copy that takes more than one chunk
  return values;
}

async function putAll(server: TestServer, values: Values, parallel = 16): Promise<void> {
  const entries = [...values];
  for (let i = 0; i < entries.length; i += parallel) {
    const batch = entries.slice(i, i + parallel);
    const results = await Promise.all(batch.map(([key, value]) => http('PUT', keyUrl(server.url, key), { body: value })));
    results.forEach((res, j) => expect([batch[j][0], res.status]).toEqual([batch[j][0], 201]));
  }
}

/**
 * Fills the cluster with these values, then adds a volume and restarts the
 * server over the same index with it: every key is still where the old
 * placement (`before`) put it, and with 3 volumes to 4 about half must move.
 */
async function fillThenAddVolume(cluster: Cluster, values: Values): Promise<{ values: Values; before: string[] }> {
  await putAll(cluster.server, values);
  const before = cluster.urls;
  await cluster.volumes.add();
  await cluster.serve(cluster.volumes.urls);
  return { values, before };
}

/** What placement says must change for each key going from one volume list to the other. */
function expectedMoves(values: Values, before: string[], after: string[]): Map<string, PlannedMove> {
  const moves = new Map<string, PlannedMove>();
  for (const [key, value] of values) {
    const from = placeKey(key, before, R);
    const to = placeKey(key, after, R);
    if (from.join(',') === to.join(',')) continue;
    const [missing, extra] = [to.filter((v) => !from.includes(v)), from.filter((v) => !to.includes(v))];
    moves.set(key, { key, size: value.length, from: from[0], to: missing, drop: extra });
  }
  return moves;
}

async function postRebalance(server: TestServer, query: string): Promise<JobView> {
  const res = await http('POST', `${server.url}/_admin/rebalance?${query}`);
  if (res.status !== 202) throw new Error(`POST /_admin/rebalance?${query} answered ${res.status}: ${res.text}`);
  return JSON.parse(res.text) as JobView;
}

async function getJob(server: TestServer, id: string): Promise<JobView> {
  const res = await http('GET', `${server.url}/_admin/jobs/${id}`);
  if (res.status !== 200) throw new Error(`GET /_admin/jobs/${id} answered ${res.status}: ${res.text}`);
  return JSON.parse(res.text) as JobView;
}

async function listJobs(server: TestServer): Promise<JobView[]> {
  const res = await http('GET', `${server.url}/_admin/jobs`);
  expect(res.status).toBe(200);
  return (JSON.parse(res.text) as { jobs: JobView[] }).jobs;
}

function finished(server: TestServer, id: string): Promise<JobView> {
  return jobFinished(server.url, `/_admin/jobs/${id}`);
}

async function runRebalance(server: TestServer, query = 'dryRun=false'): Promise<JobView> {
  return finished(server, (await postRebalance(server, query)).id);
}

/** Every file under `root`, relative path -> MD5 of its bytes, dot-directories (uploads, nginx's spool) included. */
function filesUnder(root: string, dir = '', out = new Map<string, string>()): Map<string, string> {
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const relative = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) filesUnder(root, relative, out);
    else out.set(relative, md5(readFileSync(join(root, relative))));
  }
  return out;
}

/** The key blobs on a volume (key -> MD5): its files outside mkv's and nginx's dot-directories. */
function blobsOn(volume: TestVolume): Map<string, string> {
  return new Map([...filesUnder(volume.dataDir)].filter(([path]) => !path.startsWith('.')));
}

function tempUploads(volume: TestVolume): string[] {
  return volume.has('.mkv-tmp') ? [...filesUnder(volume.filePath('.mkv-tmp')).keys()] : [];
}

/** Every file on every volume with its content, for "nothing changed" checks. */
function snapshotVolumes(volumes: TestVolumes): Record<string, string> {
  const snapshot: Record<string, string> = {};
  for (const volume of volumes.list) {
    for (const [path, sum] of filesUnder(volume.dataDir)) snapshot[`${volume.url} ${path}`] = sum;
  }
  return snapshot;
}


function indexVolumes(dbPath: string): Map<string, string[]> {
  return new Map(readIndexRows(dbPath).map((row) => [row.key, row.volumes.split(',')]));
}

const sortedKeys = (keys: Iterable<string>) => [...keys].sort();
const md5s = (values: Values) => Object.fromEntries([...values].map(([key, value]) => [key, md5(value)]));

/**
 * Every key on exactly its placement volumes with the right bytes, nothing
 * else on any volume in use (no stray blob, no leftover upload), and the
 * index listing the replicas in placement order with the values' size and MD5.
 * `tolerate`: how many stale copies (with the right bytes) and leftover
 * uploads a crash may have left.
 */
function expectOnPlacement(cluster: Cluster, values: Values, { tolerate = 0 } = {}): void {
  const { urls } = cluster;
  const strays: string[] = [];
  const uploads: string[] = [];
  for (const volume of cluster.volumes.list.filter((v) => urls.includes(v.url))) {
    const wanted = new Map([...values].filter(([key]) => placeKey(key, urls, R).includes(volume.url)));
    const held = blobsOn(volume);
    const heldWanted = Object.fromEntries([...held].filter(([key]) => wanted.has(key)));
    expect({ volume: volume.url, blobs: heldWanted }).toEqual({ volume: volume.url, blobs: md5s(wanted) });
    for (const [key, sum] of held) {
      if (wanted.has(key)) continue;
      strays.push(`${volume.url} ${key}`);
      const value = values.get(key);
      if (tolerate > 0) expect({ key, md5: sum }).toEqual({ key, md5: value ? md5(value) : 'a stale copy of a live key' });
    }
    uploads.push(...tempUploads(volume).map((path) => `${volume.url} ${path}`));
  }
  if (tolerate === 0) expect({ strays, uploads }).toEqual({ strays: [], uploads: [] });
  else expect(strays.length + uploads.length).toBeLessThanOrEqual(tolerate);
  const rows = readIndexRows(cluster.server.dbPath);
  expect(sortedKeys(rows.map((row) => row.key))).toEqual(sortedKeys(values.keys()));
  expect(rows.map(({ key, volumes, size, md5: sum, state }) => ({ key, volumes, size, md5: sum, state }))).toEqual(
    rows.map(({ key }) => {
      const value = values.get(key)!;
      return { key, volumes: placeKey(key, urls, R).join(','), size: value.length, md5: md5(value), state: 'live' };
    }),
  );
}

/** Every replica the index lists holds the key's bytes, and no volume holds a blob the index does not list there. */
function expectIndexAgreesWithVolumes(cluster: Cluster, values: Values): void {
  const listed = indexVolumes(cluster.server.dbPath);
  expect(sortedKeys(listed.keys())).toEqual(sortedKeys(values.keys()));
  for (const volume of cluster.volumes.list) {
    const wanted = new Map([...values].filter(([key]) => listed.get(key)!.includes(volume.url)));
    const blobs = Object.fromEntries(blobsOn(volume));
    expect({ volume: volume.url, blobs }).toEqual({ volume: volume.url, blobs: md5s(wanted) });
  }
}

/** GET redirects to the first placement replica, and following it returns the value. */
async function expectReadable(cluster: Cluster, values: Values): Promise<void> {
  const entries = [...values];
  for (let i = 0; i < entries.length; i += 16) {
    await Promise.all(
      entries.slice(i, i + 16).map(async ([key, value]) => {
        const res = await http('GET', keyUrl(cluster.server.url, key));
        expect({ key, status: res.status, location: res.headers.location, md5: res.headers['content-md5'] }).toEqual({
          key,
          status: 302,
          location: blobUrl(key, placeKey(key, cluster.urls, R)[0], 1),
          md5: md5(value),
        });
        const blob = await http('GET', res.headers.location);
        expect({ key, status: blob.status, md5: md5(blob.body) }).toEqual({ key, status: 200, md5: md5(value) });
      }),
    );
  }
}

function expectCountersAddUp(view: JobView): void {
  const c = view.counters;
  if (view.dryRun) expect(c.scanned).toBe(c.planned + c.skipped);
  else expect(c.scanned).toBe(c.moved + c.skipped + c.failed);
}

/** The rebalance admin job against real nginx volumes and a real SQLite index. */
describe('rebalance', () => {
  describe('adding a 4th volume to 3', () => {
    let cluster: Cluster;
    let values: Values;
    let moves: Map<string, PlannedMove>;

    beforeAll(async () => {
      cluster = await Cluster.start(3);
      const setup = await fillThenAddVolume(cluster, makeValues(200));
      values = setup.values;
      moves = expectedMoves(values, setup.before, cluster.urls);
    });
    afterAll(async () => {
      await cluster?.stop();
    });

    it('a dry run reports exactly the keys whose placement changed and changes nothing', async () => {
      expect(moves.size).toBeGreaterThan(values.size / 4); // with R=2 about half the keys get the new volume
      const volumesBefore = snapshotVolumes(cluster.volumes);
      expect(Object.keys(volumesBefore)).toHaveLength(values.size * R);
      const indexBefore = readIndexRows(cluster.server.dbPath);

      const res = await http('POST', `${cluster.server.url}/_admin/rebalance?dryRun=true`);
      expect(res.status).toBe(202);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      const queued = JSON.parse(res.text) as JobView;
      expect(res.headers.location).toBe(`/_admin/jobs/${queued.id}`);
      expect(queued).toMatchObject({ kind: 'rebalance', dryRun: true, state: 'queued', startedAt: null, finishedAt: null });

      const view = await finished(cluster.server, queued.id);
      const movedBytes = [...moves.values()].reduce((sum, move) => sum + move.size * move.to.length, 0);
      expect(view.state).toBe('succeeded');
      expect(view.errors).toEqual([]);
      expect(view.counters).toEqual({
        scanned: values.size,
        planned: moves.size,
        moved: 0,
        skipped: values.size - moves.size,
        failed: 0,
        bytes: movedBytes,
      });
      expectCountersAddUp(view);
      expect(view.progress).toMatchObject({ done: values.size, total: values.size, percent: 100 });
      expect(view.plan!.keys).toBe(moves.size);
      expect(view.plan!.bytes).toBe(movedBytes);
      const pairs = new Map<string, { from: string; to: string; keys: number; bytes: number }>();
      for (const move of moves.values()) {
        for (const to of move.to) {
          const pair = pairs.get(`${move.from} ${to}`) ?? { from: move.from, to, keys: 0, bytes: 0 };
          pair.keys += 1;
          pair.bytes += move.size;
          pairs.set(`${move.from} ${to}`, pair);
        }
      }
      type Pair = { from: string; to: string };
      const byPair = (a: Pair, b: Pair) => `${a.from} ${a.to}`.localeCompare(`${b.from} ${b.to}`);
      expect([...view.plan!.moves].sort(byPair)).toEqual([...pairs.values()].sort(byPair));

      const plan = await http('GET', `${cluster.server.url}/_admin/jobs/${view.id}/plan`);
      expect(plan.status).toBe(200);
      expect(plan.headers['content-type']).toMatch(/^application\/x-ndjson/);
      const lines = plan.text.split('\n');
      expect(lines.pop()).toBe(''); // every entry ends with a newline
      const entries = lines.map((line) => JSON.parse(line) as PlannedMove);
      expect(entries).toHaveLength(moves.size);
      expect(sortedKeys(entries.map((e) => e.key))).toEqual(sortedKeys(moves.keys()));
      for (const entry of entries) expect(entry).toEqual(moves.get(entry.key));

      expect(snapshotVolumes(cluster.volumes)).toEqual(volumesBefore);
      expect(readIndexRows(cluster.server.dbPath)).toEqual(indexBefore);
      expect((await listJobs(cluster.server)).find((job) => job.id === view.id)?.state).toBe('succeeded');
    });

    it('the real run puts every key on exactly its placement volumes and nowhere else', async () => {
      const indexBefore = new Map(readIndexRows(cluster.server.dbPath).map((row) => [row.key, row]));
      const view = await runRebalance(cluster.server, 'dryRun=false');

      expect(view).toMatchObject({ kind: 'rebalance', dryRun: false, state: 'succeeded', errors: [] });
      expect(view.plan).toBeUndefined();
      expect(view.counters).toEqual({
        scanned: values.size,
        planned: 0,
        moved: moves.size,
        skipped: values.size - moves.size,
        failed: 0,
        bytes: [...moves.values()].reduce((sum, move) => sum + move.size * move.to.length, 0),
      });
      expectCountersAddUp(view);
      expect(view.progress).toMatchObject({ done: values.size, total: values.size, percent: 100 });
      expect(Date.parse(view.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(view.startedAt!));

      expectOnPlacement(cluster, values);
      // A move changes where the replicas are, not the value: times stay.
      for (const row of readIndexRows(cluster.server.dbPath)) {
        const old = indexBefore.get(row.key)!;
        expect([row.key, row.created_at, row.updated_at]).toEqual([row.key, old.created_at, old.updated_at]);
      }
      await expectReadable(cluster, values);
    });

    it('a run with nothing to move skips every key', async () => {
      const volumesBefore = snapshotVolumes(cluster.volumes);
      const view = await runRebalance(cluster.server);
      expect(view.state).toBe('succeeded');
      expect(view.counters).toEqual({ scanned: values.size, planned: 0, moved: 0, skipped: values.size, failed: 0, bytes: 0 });
      expect(view.progress.percent).toBe(100);
      expect(snapshotVolumes(cluster.volumes)).toEqual(volumesBefore);
    });
  });

  describe('removing a volume', () => {
    let cluster: Cluster;
    let values: Values;

    beforeAll(async () => {
      cluster = await Cluster.start(3);
      values = makeValues(150);
      await putAll(cluster.server, values);
    });
    afterAll(async () => {
      await cluster?.stop();
    });

    it('re-replicates every key of the stopped, removed volume from its surviving replica', async () => {
      const [kept1, kept2, removed] = cluster.volumes.list;
      const affected = [...values.keys()].filter((key) => placeKey(key, cluster.urls, R).includes(removed.url));
      // Keys whose first replica is gone must be copied from their second one.
      expect(affected.filter((key) => placeKey(key, cluster.urls, R)[0] === removed.url).length).toBeGreaterThan(0);
      const removedFiles = filesUnder(removed.dataDir);
      await removed.stop();
      await cluster.serve([kept1.url, kept2.url]);

      const view = await runRebalance(cluster.server);

      expect(view.state).toBe('succeeded');
      expect(view.errors).toEqual([]);
      expect(view.counters).toEqual({
        scanned: values.size,
        planned: 0,
        moved: affected.length,
        skipped: values.size - affected.length,
        failed: 0,
        bytes: affected.reduce((sum, key) => sum + values.get(key)!.length, 0),
      });
      expectCountersAddUp(view);
      expect(view.progress.percent).toBe(100);
      expectOnPlacement(cluster, values);
      await expectReadable(cluster, values);
      // The removed volume was down: its blobs are untouched, for the operator to wipe.
      expect(filesUnder(removed.dataDir)).toEqual(removedFiles);
    });
  });

  describe('a target volume stopped in the middle of a run', () => {
    let cluster: Cluster;
    let values: Values;
    let before: string[];
    let moves: Map<string, PlannedMove>;

    beforeAll(async () => {
      cluster = await Cluster.start(3);
      ({ values, before } = await fillThenAddVolume(cluster, makeValues(200)));
      moves = expectedMoves(values, before, cluster.urls);
    });
    afterAll(async () => {
      await cluster?.stop();
    });

    it('fails the keys it could not copy, loses no value, and a second run finishes the work', async () => {
      const target = cluster.volumes.list[3]; // every move copies to the new volume
      const started = await postRebalance(cluster.server, 'concurrency=1');
      // Stopped once some keys have landed on it, so the run has both moved and failed keys.
      await pollUntil(async () => ((await getJob(cluster.server, started.id)).counters.moved > 0 ? true : undefined), {
        intervalMs: 5,
        what: 'the first key to move',
      });
      await target.stop();

      const view = await finished(cluster.server, started.id);

      expect(view.state).toBe('failed');
      expect(view.error).toBeUndefined(); // keys failed, not the job as a whole
      expect(view.counters.moved).toBeGreaterThan(0);
      expect(view.counters.failed).toBeGreaterThan(0);
      expect(view.counters.scanned).toBe(values.size); // one key failing does not stop the others
      expect(view.counters.moved + view.counters.failed).toBe(moves.size);
      expectCountersAddUp(view);
      expect(view.errors).toHaveLength(Math.min(view.counters.failed, 100));
      for (const error of view.errors) {
        expect(moves.has(error.key)).toBe(true);
        expect(error.message).toContain(target.url);
      }

      // With the volume still down, every key is readable from a replica the index lists.
      const listed = indexVolumes(cluster.server.dbPath);
      for (const error of view.errors) expect(listed.get(error.key)).toEqual(placeKey(error.key, before, R)); // untouched
      for (const [key, value] of values) {
        const up = listed.get(key)!.filter((url) => url !== target.url);
        expect([key, up.length > 0]).toEqual([key, true]);
        for (const url of up) {
          const blob = await http('GET', blobUrl(key, url, 1));
          expect({ key, url, status: blob.status, md5: md5(blob.body) }).toEqual({ key, url, status: 200, md5: md5(value) });
        }
      }

      await target.start();
      for (const [key, value] of values) {
        for (const url of listed.get(key)!) {
          expect({ key, url, md5: md5(cluster.volumes.byUrl(url).read(key)) }).toEqual({ key, url, md5: md5(value) });
        }
      }
      const again = await runRebalance(cluster.server);
      expect(again.state).toBe('succeeded');
      expect(again.counters).toMatchObject({ scanned: values.size, moved: view.counters.failed, failed: 0 });
      // The key in flight when nginx went down may have left its upload under /.mkv-tmp there: uploaded,
      // then the rename refused, and the volume already gone for the delete.
      expectOnPlacement(cluster, values, { tolerate: 1 });
      await expectReadable(cluster, values);
    });
  });

  describe('PUT and DELETE racing a run', () => {
    const BIG = 512 << 10;
    let cluster: Cluster;
    let values: Values;
    let moves: Map<string, PlannedMove>;

    beforeAll(async () => {
      cluster = await Cluster.start(3);
      values = makeValues(300);
      // Big enough that a key's copy lasts while a racing request for that very key arrives.
      const bigKeys = [...values.keys()].filter((key, i) => key.startsWith('k/') && i % 12 === 6);
      for (const key of bigKeys) values.set(key, randomBytes(BIG));
      const setup = await fillThenAddVolume(cluster, values);
      moves = expectedMoves(values, setup.before, cluster.urls);
    });
    afterAll(async () => {
      await cluster?.stop();
    });

    it('end with overwritten keys on their placement with the new bytes and deleted keys gone everywhere', async () => {
      // The run walks the keys in order, one at a time: `progress.done` says which key it is on.
      const order = sortedKeys(values.keys());
      const big = sortedKeys(moves.keys()).filter((key) => values.get(key)!.length === BIG);
      const staying = order.filter((key) => !moves.has(key));
      const overwritten = [...big.filter((_, i) => i % 2 === 0), ...staying.slice(-3)];
      const deleted = [...big.filter((_, i) => i % 2 === 1), ...staying.slice(-6, -3)];
      expect(big.length).toBeGreaterThanOrEqual(4);
      const newValues = new Map(overwritten.map((key) => [key, randomBytes(BIG - 1)]));

      const started = await postRebalance(cluster.server, 'concurrency=1');
      let view: JobView = started;
      const watching = (async () => {
        while (!TERMINAL_STATES.includes(view.state)) view = await getJob(cluster.server, started.id);
      })();
      const reached = (done: number) =>
        pollUntil(() => (view.progress.done >= done || TERMINAL_STATES.includes(view.state) ? true : undefined), { intervalMs: 1 });
      const raced: string[] = [];
      const race = async (key: string, startAt: number, request: () => Promise<TestResponse>) => {
        await reached(startAt);
        if (view.state === 'running') raced.push(key);
        return request();
      };
      // A PUT is sent as the run starts the key before (its upload takes a while), a DELETE as it starts the key.
      const put = (key: string) => () => http('PUT', keyUrl(cluster.server.url, key), { body: newValues.get(key)! });
      const del = (key: string) => () => http('DELETE', keyUrl(cluster.server.url, key));
      const results = await Promise.all([
        ...overwritten.map((key) => race(key, order.indexOf(key), put(key))),
        ...deleted.map((key) => race(key, order.indexOf(key) + 1, del(key))),
      ]);
      await watching;
      expect(results.map((res) => res.status)).toEqual(results.map(() => 204));
      // The premise: the requests were sent while the run was going on.
      expect(raced.length).toBeGreaterThan((overwritten.length + deleted.length) / 2);
      expect(view.state).toBe('succeeded');
      expectCountersAddUp(view);

      const again = await runRebalance(cluster.server);
      expect(again.state).toBe('succeeded');
      expect(again.counters.moved).toBe(0); // the racing writes went straight to placement

      for (const key of deleted) values.delete(key);
      for (const [key, value] of newValues) values.set(key, value);
      expectOnPlacement(cluster, values); // deleted keys: on no volume and not in the index
      for (const key of deleted) expect([key, (await http('HEAD', keyUrl(cluster.server.url, key))).status]).toEqual([key, 404]);
      await expectReadable(cluster, values);
    });
  });

  describe('cancel', () => {
    let cluster: Cluster;
    let values: Values;
    let moves: Map<string, PlannedMove>;

    beforeAll(async () => {
      cluster = await Cluster.start(3);
      const setup = await fillThenAddVolume(cluster, makeValues(200));
      values = setup.values;
      moves = expectedMoves(values, setup.before, cluster.urls);
    });
    afterAll(async () => {
      await cluster?.stop();
    });

    it('stops a running job between keys, leaves nothing half-moved, and a later run completes', async () => {
      const started = await postRebalance(cluster.server, 'concurrency=1');
      await pollUntil(async () => ((await getJob(cluster.server, started.id)).counters.moved > 0 ? true : undefined), {
        intervalMs: 5,
        what: 'the first key to move',
      });
      const res = await http('DELETE', `${cluster.server.url}/_admin/jobs/${started.id}`);
      expect(res.status).toBe(200);
      expect(JSON.parse(res.text)).toMatchObject({ id: started.id, kind: 'rebalance' });

      const view = await finished(cluster.server, started.id);
      expect(view.state).toBe('cancelled');
      expect(view.error).toBeUndefined();
      expect(view.counters.failed).toBe(0);
      expect(view.counters.moved).toBeGreaterThan(0);
      expect(view.counters.moved).toBeLessThan(moves.size);
      expect(view.progress.percent).toBeLessThan(100);
      expectCountersAddUp(view);
      // Cancelling a finished job changes nothing.
      const again = await http('DELETE', `${cluster.server.url}/_admin/jobs/${started.id}`);
      expect(JSON.parse(again.text)).toEqual(view);

      expectIndexAgreesWithVolumes(cluster, values);
      const rows = readIndexRows(cluster.server.dbPath);
      expect(rows.map((row) => [row.key, row.md5])).toEqual(rows.map((row) => [row.key, md5(values.get(row.key)!)]));

      const later = await runRebalance(cluster.server);
      expect(later.state).toBe('succeeded');
      expect(later.counters.moved).toBe(moves.size - view.counters.moved);
      expectOnPlacement(cluster, values);
    });
  });

  describe('admin API', () => {
    let cluster: Cluster;

    beforeAll(async () => {
      cluster = await Cluster.start(3);
      await fillThenAddVolume(cluster, makeValues(200));
    });
    afterAll(async () => {
      await cluster?.stop();
    });

    const post = (path: string) => http('POST', `${cluster.server.url}/_admin/${path}`);
    const jobCount = async () => (await listJobs(cluster.server)).length;

    it('answers 409 to a second topology job while one runs, and accepts one again once it ended', async () => {
      const running = await postRebalance(cluster.server, 'concurrency=1');
      for (const path of ['rebalance', 'rebalance?dryRun=true', 'rebuild']) {
        const res = await post(path);
        expect({ path, status: res.status, type: res.headers['content-type'], body: res.text }).toEqual({
          path,
          status: 409,
          type: 'text/plain; charset=utf-8',
          body: `a rebalance job is already running: ${running.id}`,
        });
      }
      expect(await jobCount()).toBe(1);
      await http('DELETE', `${cluster.server.url}/_admin/jobs/${running.id}`);
      expect((await finished(cluster.server, running.id)).state).toBe('cancelled');

      // Two at the same instant: exactly one starts. (Real runs: a dry run never yields to the event
      // loop, so the second POST would only be read once the first run had ended.)
      const racing = await Promise.all([post('rebalance?concurrency=1'), post('rebalance?concurrency=1')]);
      expect(racing.map((res) => res.status).sort()).toEqual([202, 409]);
      const winner = JSON.parse(racing.find((res) => res.status === 202)!.text) as JobView;
      expect(racing.find((res) => res.status === 409)!.text).toBe(`a rebalance job is already running: ${winner.id}`);
      expect((await finished(cluster.server, winner.id)).state).toBe('succeeded');
      expect(await jobCount()).toBe(2);
    });

    it.each([
      ['rebalance?dryrun=true', 'unknown parameter dryrun'],
      ['rebalance?dryRun=true&force=1', 'unknown parameter force'],
      ['rebalance?dryRun=yes', 'dryRun must be true or false'],
      ['rebalance?dryRun=1', 'dryRun must be true or false'],
      ['rebalance?concurrency=0', 'concurrency must be at least 1'],
      ['rebalance?concurrency=65', 'concurrency must be at most 64'],
      ['rebalance?concurrency=1.5', 'concurrency must be a whole number'],
      ['rebalance?concurrency=lots', 'concurrency must be a whole number'],
      ['rebuild?dryRun=true', 'unknown parameter dryRun'],
    ])('POST /_admin/%s answers 400 "%s" and starts nothing', async (path, message) => {
      const before = await jobCount();
      const res = await post(path);
      expect({ status: res.status, type: res.headers['content-type'], body: res.text }).toEqual({
        status: 400,
        type: 'text/plain; charset=utf-8',
        body: message,
      });
      expect(await jobCount()).toBe(before);
    });

    it('answers 404 "job X not found" for an unknown job', async () => {
      for (const [method, path] of [['GET', 'nope'], ['DELETE', 'nope'], ['GET', 'nope/plan']]) {
        const res = await http(method, `${cluster.server.url}/_admin/jobs/${path}`);
        expect({ method, path, status: res.status, body: res.text }).toEqual({ method, path, status: 404, body: 'job nope not found' });
      }
    });
  });

  describe('a server that dies while a job runs', () => {
    let cluster: Cluster;
    let values: Values;
    let serverProcess: ServerProcess | undefined;

    beforeAll(async () => {
      cluster = await Cluster.start(3);
      ({ values } = await fillThenAddVolume(cluster, makeValues(200)));
      await cluster.server.stop();
    });
    afterAll(async () => {
      try {
        serverProcess?.child.kill('SIGKILL');
      } finally {
        await cluster?.stop();
      }
    });

    it('shows the job as interrupted after the restart, keeps every listed replica, and a new run finishes the work', async () => {
      // `mkv serve` as a process of its own (the built CLI, as in cli.e2e-spec), so it can die without
      // running its shutdown hooks, as in a crash or an OOM kill. An in-process TestServer can only stop
      // gracefully, and its shutdown hook cancels the job, which is then stored as `cancelled`.
      const args = ['-d', cluster.server.dbPath, '-v', cluster.urls.join(','), '-r', String(R)];
      serverProcess = await ServerProcess.start(args, await freePort());
      const res = await http('POST', `${serverProcess.url}/_admin/rebalance?concurrency=1`);
      expect(res.status).toBe(202);
      const { id } = JSON.parse(res.text) as JobView;
      const progress = async () => JSON.parse((await http('GET', `${serverProcess!.url}/_admin/jobs/${id}`)).text) as JobView;
      await pollUntil(async () => ((await progress()).counters.moved > 0 ? true : undefined), {
        intervalMs: 5,
        what: 'the first key to move',
      });
      const exited = once(serverProcess.child, 'exit');
      serverProcess.child.kill('SIGKILL');
      await exited;

      await cluster.serve(cluster.urls);
      const view = await getJob(cluster.server, id);
      expect(view).toMatchObject({ id, kind: 'rebalance', dryRun: false, state: 'interrupted' });
      expect(view.progress.percent).toBeLessThan(100);
      expect(Date.parse(view.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(view.startedAt!));
      expect((await listJobs(cluster.server)).map((job) => [job.id, job.state])).toEqual([[id, 'interrupted']]);

      // A key's blob is copied before the index lists it there and dropped only after: whatever instant the
      // crash hit, every replica the index lists holds the value.
      const replicas = indexVolumes(cluster.server.dbPath);
      for (const [key, value] of values) {
        for (const url of replicas.get(key)!) {
          expect({ key, url, md5: md5(cluster.volumes.byUrl(url).read(key)) }).toEqual({ key, url, md5: md5(value) });
        }
      }
      const unplaced = [...replicas].filter(([key, urls]) => urls.join(',') !== placeKey(key, cluster.urls, R).join(','));
      expect(unplaced.length).toBeGreaterThan(0);

      const again = await runRebalance(cluster.server);
      expect(again.state).toBe('succeeded');
      expect(again.counters.moved).toBe(unplaced.length);
      // The key in flight when the process died may leave an old copy the index no longer lists (killed
      // between the index update and the delete), or an upload under /.mkv-tmp (killed between copy and rename).
      expectOnPlacement(cluster, values, { tolerate: 1 });
      await expectReadable(cluster, values);
    });
  });
});
