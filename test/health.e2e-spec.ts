import { chmodSync, chownSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { placeKey } from '../src/hashing/rendezvous';
import { ServerProcess } from './support/cli';
import { http, keyUrl } from './support/http';
import { pollUntil } from './support/poll-until';
import { TestServer } from './support/server';
import { TestVolumes, freePort, stopServerAndVolumes } from './support/volumes';

const INTERVAL_S = 0.2;

/** Volume health, readiness, metrics and the admin docs, with real nginx volumes stopped and started. */
describe('volume health', () => {
  let volumes: TestVolumes;
  let server: TestServer;

  beforeAll(async () => {
    volumes = await TestVolumes.start(3);
    server = await TestServer.start({ volumes: volumes.urls, replicas: 2, healthInterval: INTERVAL_S });
  });
  afterAll(() => stopServerAndVolumes(server, volumes));
  afterEach(async () => {
    for (const volume of volumes.list) await volume.start();
    await pollUntil(async () => ((await volumeStates()).every((s) => s === 'up') ? true : undefined), { what: 'all volumes up' });
  });

  const volumeStates = async () =>
    (JSON.parse((await http('GET', `${server.url}/_admin/volumes`)).text).volumes as { state: string }[]).map((v) => v.state);
  const stateOf = async (url: string) =>
    (JSON.parse((await http('GET', `${server.url}/_admin/volumes`)).text).volumes as { url: string; state: string }[]).find((v) => v.url === url)!
      .state;
  /** Keys whose replicas include (or exclude) this volume. */
  const keysOn = (volume: string, on: boolean, count: number) =>
    Array.from({ length: 200 }, (_, i) => `health/k${i}`)
      .filter((key) => placeKey(key, volumes.urls, 2).includes(volume) === on)
      .slice(0, count);

  it('reports a stopped volume down within two intervals, routes reads around it and fails writes to it fast', async () => {
    const [down] = volumes.list;
    const onDown = keysOn(down.url, true, 4);
    for (const key of onDown) expect((await http('PUT', keyUrl(server.url, key), { body: key })).status).toBe(201);

    await down.stop();
    const stoppedAt = Date.now();
    await pollUntil(async () => ((await stateOf(down.url)) === 'down' ? true : undefined), { what: 'the volume reported down', intervalMs: 20 });
    const took = Date.now() - stoppedAt;
    // Two failed probes are needed; a probe runs every interval.
    expect(took).toBeLessThanOrEqual(2 * INTERVAL_S * 1000 + 400);

    for (const key of onDown) {
      const res = await http('GET', keyUrl(server.url, key));
      expect(res.status).toBe(302);
      expect(res.headers.location.startsWith(down.url)).toBe(false);
      expect((await http('GET', res.headers.location)).text).toBe(key);
    }

    const fresh = Array.from({ length: 100 }, (_, i) => `fresh/${i}`).find((k) => placeKey(k, volumes.urls, 2).includes(down.url))!;
    const started = Date.now();
    const put = await http('PUT', keyUrl(server.url, fresh), { body: 'x' });
    expect(put.status).toBe(503);
    expect(put.text).toBe(`volume ${down.url} is down`);
    expect(Date.now() - started).toBeLessThan(500);
    for (const volume of volumes.list) expect(volume.has(fresh)).toBe(false);

    const volumesReport = JSON.parse((await http('GET', `${server.url}/_admin/volumes`)).text).volumes;
    const report = volumesReport.find((v: { url: string }) => v.url === down.url);
    expect(report).toMatchObject({ state: 'down', keys: expect.any(Number), bytes: expect.any(Number) });
    expect(report.consecutiveFailures).toBeGreaterThanOrEqual(2);
    expect(report.keys).toBeGreaterThanOrEqual(onDown.length);

    await down.start();
    await pollUntil(async () => ((await stateOf(down.url)) === 'up' ? true : undefined), { what: 'the volume back up' });
    const back = await http('PUT', keyUrl(server.url, fresh), { body: 'x' });
    expect(back.status).toBe(201);
    expect(down.has(fresh)).toBe(true);
    const firstOnDown = onDown.find((k) => placeKey(k, volumes.urls, 2)[0] === down.url);
    if (firstOnDown) expect((await http('GET', keyUrl(server.url, firstOnDown))).headers.location.startsWith(down.url)).toBe(true);
  });

  it('answers 503 "no healthy volume" for a key whose replicas are all down, and HEAD still from the index', async () => {
    const key = 'health/both-down';
    await http('PUT', keyUrl(server.url, key), { body: 'value' });
    const replicas = placeKey(key, volumes.urls, 2).map((url) => volumes.byUrl(url));
    for (const volume of replicas) await volume.stop();
    await pollUntil(async () => ((await Promise.all(replicas.map((v) => stateOf(v.url)))).every((s) => s === 'down') ? true : undefined), {
      what: 'both replicas down',
    });
    const res = await http('GET', keyUrl(server.url, key));
    expect(res.status).toBe(503);
    expect(res.text).toBe(`no healthy volume for key ${key}`);
    const head = await http('HEAD', keyUrl(server.url, key));
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('5');
  });

  it('is ready while at least R volumes are up, and says why not otherwise', async () => {
    const ready = await http('GET', `${server.url}/_admin/ready`);
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.text)).toMatchObject({ status: 'ok', details: { index: { status: 'up' }, volumes: { status: 'up', up: 3, needed: 2 } } });

    await volumes.list[0].stop();
    await volumes.list[1].stop();
    const notReady = await pollUntil(async () => {
      const res = await http('GET', `${server.url}/_admin/ready`);
      return res.status === 503 ? res : undefined;
    }, { what: 'readiness to flip' });
    expect(notReady.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(notReady.text)).toMatchObject({ status: 'error', error: { volumes: { status: 'down', up: 1, needed: 2 } } });
    expect((await http('GET', `${server.url}/_admin/health`)).status).toBe(200);
  });

  it('is not ready when the index cannot be written (a read-only index file), and says why', async () => {
    // A real read-only file, not an injected fault: the index is made by a
    // server run as this user, then left owned by it with mode 0444, and
    // `mkv serve` runs as an unprivileged user (root, running the tests,
    // ignores file modes) in a directory it may write (SQLite's -wal and -shm
    // files). Reads work; every write fails. Before, readiness answered 200.
    const dir = join(volumes.root, 'read-only-index');
    mkdirSync(dir);
    const setup = await TestServer.start({ volumes: volumes.urls, replicas: 2, dir });
    await setup.stop();
    chmodSync(join(dir, 'index.db'), 0o444);
    const asUser = process.getuid!() === 0 ? { uid: 65534, gid: 65534 } : {}; // nobody
    chmodSync(volumes.root, 0o755);
    if (asUser.uid !== undefined) {
      // Only the index file stays out of its reach (SQLite's -wal and -shm, if left, are its to use).
      for (const name of ['', ...readdirSync(dir).filter((name) => name !== 'index.db')]) chownSync(join(dir, name), asUser.uid, asUser.gid);
    }

    const port = await freePort();
    const readOnly = await ServerProcess.start(['-d', join(dir, 'index.db'), '-v', volumes.urls.join(','), '-r', '2'], port, {}, asUser);
    try {
      // Once the probes found the volumes up, only the index can be what is not ready.
      const res = await pollUntil(async () => {
        const answer = await http('GET', `${readOnly.url}/_admin/ready`);
        return JSON.parse(answer.text).details?.volumes?.status === 'up' ? answer : undefined;
      }, { what: 'the probes to find the volumes up' });
      expect(res.status).toBe(503);
      expect(JSON.parse(res.text)).toMatchObject({
        status: 'error',
        error: { index: { status: 'down', message: 'database error: attempt to write a readonly database' } },
      });
      // What readiness warns of: a write fails.
      const put = await http('PUT', keyUrl(readOnly.url, 'health/read-only'), { body: 'x' });
      expect([put.status, put.text]).toEqual([500, 'database error: attempt to write a readonly database']);
    } finally {
      await readOnly.stop();
    }
  });

  it('serves Prometheus metrics whose counters move with traffic', async () => {
    const parse = (text: string) => {
      const samples = new Map<string, number>();
      for (const line of text.split('\n')) {
        if (line === '' || line.startsWith('#')) continue;
        // Values as Prometheus parses them (Go's ParseFloat: NaN and Inf in any case).
        const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.]+(?:e[+-]?\d+)?|nan|[+-]inf)$/i.exec(line);
        if (!match) throw new Error(`not Prometheus text: ${line}`);
        samples.set(`${match[1]}${match[2] ?? ''}`, Number(match[3]));
      }
      return samples;
    };
    const scrape = async () => {
      const res = await http('GET', `${server.url}/_admin/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      return parse(res.text);
    };
    const before = await scrape();
    for (let i = 0; i < 3; i++) await http('PUT', keyUrl(server.url, `metrics/${i}`), { body: '12345' });
    await http('GET', keyUrl(server.url, 'metrics/0'));
    const after = await scrape();

    const puts = (m: Map<string, number>) => m.get('mkv_http_requests_total{method="PUT",status="201"}') ?? 0;
    expect(puts(after) - puts(before)).toBe(3);
    expect(after.get('mkv_http_requests_total{method="GET",status="302"}')).toBeGreaterThanOrEqual(1);
    expect((after.get('mkv_bytes_written_total') ?? 0) - (before.get('mkv_bytes_written_total') ?? 0)).toBe(3 * 5 * 2);
    expect(after.get('mkv_http_request_duration_seconds_count{method="PUT"}')).toBeGreaterThanOrEqual(3);
    for (const volume of volumes.urls) expect(after.get(`mkv_volume_up{volume="${volume}"}`)).toBe(1);
    expect(after.get('mkv_index_keys')).toBeGreaterThanOrEqual(3);
  });

  it('describes the admin API in OpenAPI at /_admin/docs', async () => {
    const page = await http('GET', `${server.url}/_admin/docs`);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    const document = JSON.parse((await http('GET', `${server.url}/_admin/docs-json`)).text);
    expect(Object.keys(document.paths)).toEqual(
      expect.arrayContaining(['/_admin/rebalance', '/_admin/rebuild', '/_admin/jobs/{id}', '/_admin/volumes', '/_admin/ready', '/_admin/metrics']),
    );
    expect(Object.keys(document.paths).every((path) => path.startsWith('/_admin/'))).toBe(true);
  });

  it('gives every answer a request id, the caller\'s when it sends one', async () => {
    const own = await http('GET', keyUrl(server.url, 'no/such'), { headers: { 'x-request-id': 'trace-123' } });
    expect(own.headers['x-request-id']).toBe('trace-123');
    const made = await http('GET', keyUrl(server.url, 'no/such'));
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});
