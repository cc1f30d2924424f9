import { DynamicModule, Inject, Injectable, Module } from '@nestjs/common';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { InMemoryIndexModule } from '../examples/in-memory-index/in-memory-index.module';
// Everything a team's decorator needs comes from the public API, as it would in its own project.
import {
  HttpVolumeClient,
  KEY_INDEX,
  loadConfig,
  MkvConfig,
  rankVolumes,
  RendezvousPlacement,
  runJob,
  SqliteIndexModule,
  SqliteKeyIndex,
  VOLUME_CLIENT,
  type JobView,
  type KeyIndex,
  type MkvExtension,
  type Placement,
  type VolumeClient,
} from 'mkv';
import { http, keyUrl } from './support/http';
import { readIndexRows } from './support/index-rows';
import { jobFinished } from './support/jobs';
import { pollUntil } from './support/poll-until';
import { TestServer } from './support/server';
import { TestVolumes } from './support/volumes';

const R = 2;

/** One call a recorder saw: the method, and its first argument (a URL for a volume client, a key for an index). */
interface Call {
  method: string;
  arg: unknown;
}

/**
 * A decorator that records each call of the interface's methods into `calls`,
 * then lets the wrapped object do the work: a team's metrics or tracing
 * wrapper of a stock provider, reduced to its bones. Only the interface's
 * methods: the stock object's lifecycle hooks stay its own.
 */
function recorder<T extends object>(inner: T, methodNames: Record<keyof T, true>, calls: Call[]): T {
  const wrapper: Record<string, unknown> = {};
  for (const method of Object.keys(methodNames)) {
    wrapper[method] = (...args: unknown[]) => {
      calls.push({ method, arg: args[0] });
      return (inner as Record<string, (...a: unknown[]) => unknown>)[method](...args);
    };
  }
  return wrapper as T;
}

/** Every method of each interface (the compiler refuses a list missing one). */
const VOLUME_CLIENT_METHODS: Record<keyof VolumeClient, true> = { put: true, move: true, delete: true, get: true, list: true, probe: true };
const KEY_INDEX_METHODS: Record<keyof KeyIndex, true> = {
  get: true,
  findConflict: true,
  beginWrite: true,
  finishWrite: true,
  abortWrite: true,
  beginDirectWrite: true,
  commitDirectWrite: true,
  pendingWrites: true,
  setState: true,
  beginDelete: true,
  finishDelete: true,
  pendingDeletes: true,
  list: true,
  scan: true,
  count: true,
  usage: true,
  ping: true,
  setVolumes: true,
};

const methods = (calls: Call[]) => new Set(calls.map((call) => call.method));
const argsOf = (calls: Call[], method: string) => calls.filter((call) => call.method === method).map((call) => String(call.arg));

/** The volume client as a decorator of the stock one (a factory provider injecting HttpVolumeClient). */
function recordingVolumeClient(calls: Call[]): MkvExtension['volumeClient'] {
  return { inject: [HttpVolumeClient], useFactory: (stock: HttpVolumeClient) => recorder<VolumeClient>(stock, VOLUME_CLIENT_METHODS, calls) };
}

@Module({})
class RecordingIndexModule {}

/**
 * The stock SQLite index with KEY_INDEX wrapped by a recorder. REBUILD_STAGING
 * and JOB_STORE stay the stock index's own: the module re-exports
 * SqliteIndexModule, and its own KEY_INDEX is found before the one inside it.
 */
function recordingIndexModule(calls: Call[]): DynamicModule {
  return {
    module: RecordingIndexModule,
    imports: [SqliteIndexModule],
    providers: [{ provide: KEY_INDEX, inject: [SqliteKeyIndex], useFactory: (stock: KeyIndex) => recorder<KeyIndex>(stock, KEY_INDEX_METHODS, calls) }],
    exports: [KEY_INDEX, SqliteIndexModule],
  };
}

/** Rendezvous hashing read backwards: the stock placement's last volume is this one's first replica. */
@Injectable()
class ReversedPlacement implements Placement {
  constructor(
    @Inject(RendezvousPlacement) private readonly stock: RendezvousPlacement,
    @Inject(MkvConfig) private readonly config: MkvConfig,
  ) {}

  rank(key: string): string[] {
    return [...this.stock.rank(key)].reverse();
  }

  replicasFor(key: string): string[] {
    return this.rank(key).slice(0, this.config.replicas);
  }

  blobUrl(key: string, volume: string): string {
    return this.stock.blobUrl(key, volume);
  }
}

const reversedReplicas = (key: string, volumes: string[]) => [...rankVolumes(key, volumes)].reverse().slice(0, R);
const stockReplicas = (key: string, volumes: string[]) => rankVolumes(key, volumes).slice(0, R);

async function put(server: TestServer, key: string, value: string): Promise<void> {
  const res = await http('PUT', keyUrl(server.url, key), { body: value });
  expect([key, res.status, res.text]).toEqual([key, 201, '']);
}

async function startJob(server: TestServer, kind: 'rebuild' | 'rebalance'): Promise<JobView> {
  const res = await http('POST', `${server.url}/_admin/${kind}`);
  expect([res.status, res.text.slice(0, 200)]).toEqual([202, expect.any(String)]);
  return jobFinished(server.url, res.headers.location);
}

/** runJob as `mkv rebalance` runs it, in this process, with its summary kept off the test output. */
async function runRebalanceJob(options: Parameters<typeof runJob>[0]): Promise<number> {
  const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    return await runJob(options, 'rebalance');
  } finally {
    log.mockRestore();
    stderr.mockRestore();
  }
}

describe('an in-memory index (examples/in-memory-index) in place of SQLite, over real nginx volumes', () => {
  let volumes: TestVolumes;
  let server: TestServer;
  let indexDir: string;

  beforeAll(async () => {
    volumes = await TestVolumes.start(3);
    indexDir = join(volumes.root, 'index');
    server = await TestServer.start({ volumes: volumes.urls, replicas: R, dir: indexDir }, { index: InMemoryIndexModule });
  });

  afterAll(async () => {
    await server?.stop();
    await volumes?.stop();
  });

  it('serves PUT, GET, HEAD, listings, UNLINK and DELETE, with the blobs on the volumes placement names', async () => {
    // Byte order of UTF-8: U+FFFF before U+1F600, which JavaScript's own string order has the other way round.
    const keys = ['docs/b', 'docs/a\u{1F600}', 'docs/a\uFFFF', 'docs/café'];
    for (const key of keys) await put(server, key, `value of ${key}`);

    for (const key of keys) {
      const replicas = stockReplicas(key, volumes.urls);
      const get = await http('GET', keyUrl(server.url, key));
      expect(get.status).toBe(302);
      expect(get.headers.location).toBe(keyUrl(replicas[0], key));
      for (const volume of volumes.list) expect([key, volume.url, volume.has(key)]).toEqual([key, volume.url, replicas.includes(volume.url)]);
      expect(volumes.byUrl(replicas[1]).read(key).toString()).toBe(`value of ${key}`);
      const head = await http('HEAD', keyUrl(server.url, key));
      expect([head.status, head.headers['content-length']]).toEqual([200, String(Buffer.byteLength(`value of ${key}`))]);
    }

    expect(JSON.parse((await http('GET', `${server.url}/?prefix=docs/`)).text)).toEqual({
      keys: ['docs/a\uFFFF', 'docs/a\u{1F600}', 'docs/b', 'docs/café'],
      next: '',
    });
    expect(JSON.parse((await http('GET', `${server.url}/?prefix=docs/&limit=1&start=${encodeURIComponent('docs/a\u{1F600}')}`)).text)).toEqual({
      keys: ['docs/a\u{1F600}'],
      next: 'docs/b',
    });
    const conflict = await http('PUT', keyUrl(server.url, 'docs/b/c'), { body: 'x' });
    expect([conflict.status, conflict.text]).toEqual([409, 'key docs/b/c conflicts with existing key docs/b']);

    expect((await http('UNLINK', keyUrl(server.url, 'docs/b'))).status).toBe(204);
    expect((await http('GET', keyUrl(server.url, 'docs/b'))).status).toBe(404);
    expect(JSON.parse((await http('GET', `${server.url}/docs/?unlinked`)).text)).toEqual({ keys: ['/docs/b'], next: '' });

    const replicas = stockReplicas('docs/café', volumes.urls);
    expect((await http('DELETE', keyUrl(server.url, 'docs/café'))).status).toBe(204);
    expect((await http('GET', keyUrl(server.url, 'docs/café'))).status).toBe(404);
    for (const url of replicas) expect(volumes.byUrl(url).has('docs/café')).toBe(false);

    // Readiness asks the index (ping); the metrics its usage counters (3 keys left: two live, one unlinked).
    expect((await http('GET', `${server.url}/_admin/ready`)).status).toBe(200);
    expect((await http('GET', `${server.url}/_admin/metrics`)).text).toMatch(/^mkv_index_keys 3$/m);
  });

  it('runs a rebalance job and lists it in /_admin/jobs', async () => {
    const job = await startJob(server, 'rebalance');
    expect(job).toMatchObject({ kind: 'rebalance', state: 'succeeded', counters: { scanned: 3, skipped: 3, moved: 0, failed: 0 } });
    const jobs = JSON.parse((await http('GET', `${server.url}/_admin/jobs`)).text) as { jobs: JobView[] };
    expect(jobs.jobs.map((j) => [j.id, j.state])).toContainEqual([job.id, 'succeeded']);
  });

  it('refuses a rebuild: the index has no rebuild staging, and the keys stay as they are', async () => {
    const res = await http('POST', `${server.url}/_admin/rebuild`);
    expect([res.status, res.headers['content-type'], res.text]).toEqual([501, 'text/plain; charset=utf-8', 'rebuild is not supported by this index']);
    const jobs = JSON.parse((await http('GET', `${server.url}/_admin/jobs`)).text) as { jobs: JobView[] };
    expect(jobs.jobs.filter((j) => j.kind === 'rebuild')).toEqual([]); // refused before any job was queued
    expect(JSON.parse((await http('GET', `${server.url}/?prefix=docs/`)).text).keys).toEqual(['docs/a\uFFFF', 'docs/a\u{1F600}']);
  });

  it('never creates the SQLite file, nor its lock, pid or WAL files', () => {
    expect(existsSync(server.dbPath)).toBe(false);
    expect(readdirSync(indexDir)).toEqual([]);
  });
});

describe('a volume client decorator (records each call, wraps the stock HttpVolumeClient) is what every consumer gets', () => {
  let volumes: TestVolumes;
  let server: TestServer;
  let indexDir: string;
  const calls: Call[] = [];
  const extension: MkvExtension = { volumeClient: recordingVolumeClient(calls) };
  const keys = Array.from({ length: 24 }, (_, i) => `v/${i}`); // enough that some move to an added volume (each does with p = 1/2)

  beforeAll(async () => {
    volumes = await TestVolumes.start(3);
    indexDir = join(volumes.root, 'index');
    server = await TestServer.start({ volumes: volumes.urls, replicas: R, dir: indexDir }, extension);
  });

  afterAll(async () => {
    await server?.stop();
    await volumes?.stop();
  });

  it('writes and deletes keys through it', async () => {
    calls.length = 0;
    await put(server, 'v/doomed', 'bytes');
    const replicas = stockReplicas('v/doomed', volumes.urls);
    // A new key with a small value: straight to each replica's path, no rename.
    expect(argsOf(calls, 'put').sort()).toEqual(replicas.map((url) => keyUrl(url, 'v/doomed')).sort());
    expect(argsOf(calls, 'move')).toEqual([]);

    calls.length = 0;
    expect((await http('PUT', keyUrl(server.url, 'v/doomed'), { body: 'other bytes' })).status).toBe(204);
    // An overwrite: the upload under a temporary name on each replica, then the rename into place.
    expect(argsOf(calls, 'put').map((url) => url.replace(/\/\.mkv-tmp\/.*$/, '')).sort()).toEqual([...replicas].sort());
    expect(argsOf(calls, 'move').map((url) => url.replace(/\/\.mkv-tmp\/.*$/, '')).sort()).toEqual([...replicas].sort());

    calls.length = 0;
    expect((await http('DELETE', keyUrl(server.url, 'v/doomed'))).status).toBe(204);
    expect(argsOf(calls, 'delete').sort()).toEqual(replicas.map((url) => keyUrl(url, 'v/doomed')).sort());
    for (const url of replicas) expect(volumes.byUrl(url).has('v/doomed')).toBe(false);
  });

  it('probes the volumes through it', async () => {
    calls.length = 0;
    await pollUntil(() => (volumes.urls.every((url) => argsOf(calls, 'probe').includes(url)) ? true : undefined), {
      what: 'a probe of every volume through the decorator',
    });
  });

  it('walks the volumes through it in a rebuild', async () => {
    for (const key of keys) await put(server, key, `value of ${key}`);
    calls.length = 0;
    const job = await startJob(server, 'rebuild');
    expect(job).toMatchObject({ state: 'succeeded', counters: { moved: keys.length } });
    expect(argsOf(calls, 'list')).toEqual(expect.arrayContaining(volumes.urls.map((url) => `${url}/`)));
  });

  it('copies through it in a rebalance after a volume is added', async () => {
    const added = await volumes.add();
    await server.stop();
    server = await TestServer.start({ volumes: volumes.urls, replicas: R, dir: indexDir }, extension);
    calls.length = 0;
    const job = await startJob(server, 'rebalance');
    expect(job).toMatchObject({ state: 'succeeded', counters: { failed: 0 } });
    // Every key that moves gets one copy, on the new volume: read from an old replica, uploaded, renamed.
    const moved = keys.filter((key) => stockReplicas(key, volumes.urls).includes(added.url));
    expect(moved.length).toBeGreaterThan(0);
    expect(job.counters.moved).toBe(moved.length);
    expect(argsOf(calls, 'put').map((url) => url.replace(/\/\.mkv-tmp\/.*$/, ''))).toEqual(moved.map(() => added.url));
    expect(argsOf(calls, 'move').map((url) => url.replace(/\/\.mkv-tmp\/.*$/, ''))).toEqual(moved.map(() => added.url));
    expect(argsOf(calls, 'get').sort()).toEqual(moved.map((key) => keyUrl(stockReplicas(key, volumes.urls.slice(0, 3))[0], key)).sort());
    for (const key of moved) expect(added.has(key)).toBe(true);
  });

  it('keeps the stock client’s lifecycle: closing the server runs its shutdown hook', async () => {
    const stock = server.app.get(HttpVolumeClient);
    expect(server.app.get(VOLUME_CLIENT)).not.toBe(stock);
    const shutdown = jest.spyOn(stock, 'onApplicationShutdown');
    await server.stop();
    expect(shutdown).toHaveBeenCalledTimes(1);
    await expect(stock.probe(volumes.urls[0], 1000)).rejects.toThrow('client closed');
  });

  it('is what the CLI’s rebalance (runJob in-process) uses too', async () => {
    // Back to the first 3 volumes: the keys on the 4th are copied back to where placement wants them.
    const urls = volumes.urls.slice(0, 3);
    calls.length = 0;
    const config = loadConfig({ db: server.dbPath, volumes: urls, replicas: R, logLevel: 'error' });
    expect(await runRebalanceJob({ config, ...extension })).toBe(0);
    const moved = keys.filter((key) => stockReplicas(key, volumes.urls).includes(volumes.urls[3]));
    expect(argsOf(calls, 'put')).toHaveLength(moved.length);
    expect(argsOf(calls, 'delete').sort()).toEqual(moved.map((key) => keyUrl(volumes.urls[3], key)).sort());
    for (const key of moved) expect(volumes.list[3].has(key)).toBe(false);
    expect(readIndexRows(config.db).map((row) => [row.key, row.volumes])).toEqual(
      [...keys].sort().map((key) => [key, stockReplicas(key, urls).join(',')]),
    );
  });
});

describe('an index module that wraps the stock SqliteKeyIndex (KEY_INDEX recorded) is what every consumer gets', () => {
  let volumes: TestVolumes;
  let server: TestServer;
  const calls: Call[] = [];

  beforeAll(async () => {
    volumes = await TestVolumes.start(3);
    server = await TestServer.start({ volumes: volumes.urls, replicas: R, dir: join(volumes.root, 'index') }, { index: recordingIndexModule(calls) });
  });

  afterAll(async () => {
    await server?.stop();
    await volumes?.stop();
  });

  it('is what the start-up recovery asks for interrupted writes and undone blob deletes', () => {
    expect([...methods(calls)]).toEqual(expect.arrayContaining(['pendingWrites', 'pendingDeletes']));
  });

  it('serves the keys through it, and the SQLite file beneath holds them', async () => {
    calls.length = 0;
    await put(server, 'i/a', 'first');
    await put(server, 'i/b', 'second');
    expect((await http('PUT', keyUrl(server.url, 'i/b'), { body: 'overwritten' })).status).toBe(204);
    expect((await http('GET', keyUrl(server.url, 'i/a'))).status).toBe(302);
    expect((await http('HEAD', keyUrl(server.url, 'i/a'))).status).toBe(200);
    expect(JSON.parse((await http('GET', `${server.url}/?prefix=i/`)).text)).toEqual({ keys: ['i/a', 'i/b'], next: '' });
    expect((await http('UNLINK', keyUrl(server.url, 'i/b'))).status).toBe(204);
    expect((await http('DELETE', keyUrl(server.url, 'i/b'))).status).toBe(204);
    expect([...methods(calls)]).toEqual(expect.arrayContaining(['beginDirectWrite', 'commitDirectWrite', 'beginWrite', 'finishWrite', 'get', 'list', 'setState', 'beginDelete', 'finishDelete']));
    expect(argsOf(calls, 'get')).toEqual(expect.arrayContaining(['i/a']));
    expect(readIndexRows(server.dbPath).map((row) => row.key)).toEqual(['i/a']);
  });

  it('answers readiness with its ping and the metrics with its usage', async () => {
    calls.length = 0;
    expect((await http('GET', `${server.url}/_admin/ready`)).status).toBe(200);
    expect(methods(calls)).toContain('ping');
    calls.length = 0;
    expect((await http('GET', `${server.url}/_admin/metrics`)).text).toMatch(/^mkv_index_keys 1$/m);
    expect(methods(calls)).toContain('usage');
  });

  it('pages a rebalance through it (scan), and keeps the stock job store and rebuild staging', async () => {
    calls.length = 0;
    const rebalance = await startJob(server, 'rebalance');
    expect(rebalance).toMatchObject({ state: 'succeeded', counters: { scanned: 1, skipped: 1 } });
    expect(methods(calls)).toContain('scan');
    // Rebuild staging and the jobs are the stock index's: a rebuild runs, and both jobs are listed.
    const rebuild = await startJob(server, 'rebuild');
    expect(rebuild).toMatchObject({ state: 'succeeded', counters: { moved: 1 } });
    const jobs = JSON.parse((await http('GET', `${server.url}/_admin/jobs`)).text) as { jobs: JobView[] };
    expect(jobs.jobs.map((j) => j.id)).toEqual([rebuild.id, rebalance.id]);
  });
});

describe('a replaced placement (rendezvous reversed) decides where writes, rebuilds and rebalances put the keys', () => {
  let volumes: TestVolumes;
  let server: TestServer;
  let indexDir: string;
  const extension: MkvExtension = { placement: ReversedPlacement };
  const keys = Array.from({ length: 24 }, (_, i) => `p/${i}`); // enough that some move to an added volume (each does with p = 1/2)

  /** Each key's blob is on exactly the replicas the reversed placement names, and the index lists them in its order. */
  function expectPlacedReversed(urls: string[]): void {
    for (const key of keys) {
      const replicas = reversedReplicas(key, urls);
      for (const volume of volumes.list) expect([key, volume.url, volume.has(key)]).toEqual([key, volume.url, replicas.includes(volume.url)]);
    }
    expect(readIndexRows(join(indexDir, 'index.db')).map((row) => [row.key, row.volumes])).toEqual(
      [...keys].sort().map((key) => [key, reversedReplicas(key, urls).join(',')]),
    );
  }

  beforeAll(async () => {
    volumes = await TestVolumes.start(3);
    indexDir = join(volumes.root, 'index');
    server = await TestServer.start({ volumes: volumes.urls, replicas: R, dir: indexDir }, extension);
  });

  afterAll(async () => {
    await server?.stop();
    await volumes?.stop();
  });

  it('writes each key where it says, and reads redirect to its first replica', async () => {
    for (const key of keys) await put(server, key, `value of ${key}`);
    expectPlacedReversed(volumes.urls);
    for (const key of keys) {
      const first = reversedReplicas(key, volumes.urls)[0];
      expect(first).not.toBe(stockReplicas(key, volumes.urls)[0]);
      expect((await http('GET', keyUrl(server.url, key))).headers.location).toBe(keyUrl(first, key));
    }
  });

  it('orders the replicas a rebuild finds in its order', async () => {
    // A lost index: the rebuild finds every key again, and only placement says which replica comes first.
    await server.stop();
    rmSync(indexDir, { recursive: true, force: true });
    server = await TestServer.start({ volumes: volumes.urls, replicas: R, dir: indexDir }, extension);
    const job = await startJob(server, 'rebuild');
    expect(job).toMatchObject({ state: 'succeeded', counters: { moved: keys.length } });
    expectPlacedReversed(volumes.urls);
  });

  it('moves keys where it says in a rebalance after a volume is added', async () => {
    await volumes.add();
    await server.stop();
    server = await TestServer.start({ volumes: volumes.urls, replicas: R, dir: indexDir }, extension);
    const job = await startJob(server, 'rebalance');
    expect(job).toMatchObject({ state: 'succeeded', counters: { failed: 0 } });
    expect(job.counters.moved).toBeGreaterThan(0);
    expectPlacedReversed(volumes.urls);
  });

  it('is what the CLI’s rebalance (runJob in-process) uses too', async () => {
    await server.stop();
    const urls = volumes.urls.slice(0, 3);
    const config = loadConfig({ db: join(indexDir, 'index.db'), volumes: urls, replicas: R, logLevel: 'error' });
    expect(await runRebalanceJob({ config, ...extension })).toBe(0);
    expectPlacedReversed(urls);
  });
});
