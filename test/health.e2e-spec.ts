import { chmodSync, chownSync, mkdirSync, readdirSync } from 'node:fs';
import { connect, Socket } from 'node:net';
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
    for (const volume of volumes.list) volume.resume();
    for (const volume of volumes.list) await volume.start();
    await pollUntil(async () => ((await volumeStates()).every((s) => s === 'up') ? true : undefined), { what: 'all volumes up' });
  });

  interface VolumeReport {
    url: string;
    state: string;
    lastCheckAt: string | null;
    lastError: string | null;
    consecutiveFailures: number;
  }
  const volumeReports = async () => JSON.parse((await http('GET', `${server.url}/_admin/volumes`)).text).volumes as VolumeReport[];
  const volumeStates = async () => (await volumeReports()).map((v) => v.state);
  /** Waits until every volume has been probed `rounds` more times (its lastCheckAt moved on each time). */
  const everyVolumeProbed = async (rounds: number, timeoutMs: number) => {
    for (let round = 0; round < rounds; round++) {
      const before = new Map((await volumeReports()).map((v) => [v.url, v.lastCheckAt]));
      await pollUntil(async () => ((await volumeReports()).every((v) => v.lastCheckAt !== before.get(v.url)) ? true : undefined), {
        what: `every volume's lastCheckAt to move (round ${round + 1} of ${rounds})`,
        timeoutMs,
      });
    }
  };
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

  it('answers 503 "no healthy volume" for a key whose replicas are all down (refused: dead), and HEAD still from the index', async () => {
    const key = 'health/both-down';
    await http('PUT', keyUrl(server.url, key), { body: 'value' });
    const replicas = placeKey(key, volumes.urls, 2).map((url) => volumes.byUrl(url));
    for (const volume of replicas) await volume.stop();
    await pollUntil(async () => ((await Promise.all(replicas.map((v) => stateOf(v.url)))).every((s) => s === 'down') ? true : undefined), {
      what: 'both replicas down',
    });
    for (const report of (await volumeReports()).filter((v) => replicas.some((r) => r.url === v.url))) {
      expect(report.lastError).toMatch(/ECONNREFUSED/);
    }
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

  /*
   * Issue 10: clients that start a PUT and stop filled one volume's 512-connection
   * data pool; the probe of that volume waited for a pooled connection (its
   * timeout did not cover the wait) and the round of probes waited for it, so
   * lastCheckAt froze for every volume and the stuck one stayed up. Probes now
   * have their own connection and each volume its own schedule.
   */
  it('keeps probing every volume while stalled uploads hold all of one volume\'s data connections', async () => {
    const [stuck] = volumes.list;
    const keys = Array.from({ length: 2000 }, (_, i) => `stall/${i}`)
      .filter((key) => placeKey(key, volumes.urls, 2).includes(stuck.url))
      .slice(0, 530);
    expect(keys).toHaveLength(530);
    const head = (key: string) =>
      `PUT /${key} HTTP/1.1\r\nhost: mkv\r\ncontent-type: application/octet-stream\r\ncontent-length: ${1 << 20}\r\n\r\n`;
    const sockets: Socket[] = [];
    try {
      for (const key of keys) {
        const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
        socket.on('error', () => undefined);
        socket.write(head(key));
        socket.write(Buffer.alloc(70 * 1024, 'x')); // then nothing more: the upload stalls
        sockets.push(socket);
      }
      // nginx spools each body it is receiving into a file: 512 of them is a full pool on that volume.
      await pollUntil(() => (stuck.bodiesReceiving() >= 512 ? true : undefined), { what: '512 stalled uploads on one volume', timeoutMs: 30_000 });

      await everyVolumeProbed(3, 5000);
      expect(await stateOf(stuck.url)).toBe('up'); // its probes get their own connection, and nginx answers them
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });

  /*
   * A volume that takes connections but answers nothing (nginx stopped with
   * SIGSTOP, as a volume under heavy load looks) goes out of `up` as `slow`,
   * while the others keep being probed on their own schedule. A key whose
   * replicas are all slow is still redirected to its first replica (under CPU
   * load, the test suite saw `503 no healthy volume` for live volumes), and a
   * PUT to a slow volume is not refused up front: it waits for the volume.
   */
  it('marks a volume that never answers slow, keeps probing the others, still redirects reads to it and lets writes wait for it', async () => {
    const key = 'health/slow-replicas';
    expect((await http('PUT', keyUrl(server.url, key), { body: 'value' })).status).toBe(201);
    const replicas = placeKey(key, volumes.urls, 2).map((url) => volumes.byUrl(url));
    const other = volumes.list.find((v) => !replicas.includes(v))!;
    for (const volume of replicas) volume.pause();

    await pollUntil(async () => ((await Promise.all(replicas.map((v) => stateOf(v.url)))).every((s) => s === 'slow') ? true : undefined), {
      what: 'both replicas slow',
    });
    await everyVolumeProbed(2, 5000);
    const reports = await volumeReports();
    for (const volume of replicas) {
      const report = reports.find((v) => v.url === volume.url)!;
      expect(report.lastError).toBe(`HEAD ${volume.url}/.mkv-probe: no answer within 1000 ms`);
      expect(report.consecutiveFailures).toBeGreaterThanOrEqual(2);
    }
    expect(reports.find((v) => v.url === other.url)!.state).toBe('up');

    const get = await http('GET', keyUrl(server.url, key));
    expect(get.status).toBe(302);
    expect(get.headers.location).toBe(`${replicas[0].url}/${key}`);

    const slowKey = Array.from({ length: 100 }, (_, i) => `slow/${i}`).find((k) => placeKey(k, volumes.urls, 2).includes(replicas[0].url))!;
    const put = http('PUT', keyUrl(server.url, slowKey), { body: 'late' });
    for (const volume of replicas) volume.resume();
    expect((await put).status).toBe(201);
    for (const url of placeKey(slowKey, volumes.urls, 2)) expect(volumes.byUrl(url).read(slowKey).toString()).toBe('late');
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
