import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { CountingVolumeClient, mkvExtension as countingExtension } from '../examples/counting-volume-client/counting-volume-client';
import { mkvExtension as writeTokenExtension } from '../examples/write-token-guard/write-token-guard';
import type { MkvExtension } from '../src/mkv-options';
import { HttpVolumeClient } from '../src/volumes/http-volume.client';
import { VOLUME_CLIENT } from '../src/volumes/volume-client';
import { runMkv, ServerProcess } from './support/cli';
import { builtExample } from './support/examples';
import { http, keyUrl, md5 } from './support/http';
import { readIndexRows } from './support/index-rows';
import { jobFinished } from './support/jobs';
import { TestServer } from './support/server';
import { freePort, TestVolumes } from './support/volumes';

/**
 * The worked examples in examples/, run as a team runs them: each example's
 * module file loaded by `mkv serve --module` (compiled against the package's
 * own declarations, see test/support/examples.ts), and in a team's own
 * process through createServer({ config, ...mkvExtension }), over real nginx
 * volumes and a real SQLite index.
 */

/** A running server, however it was started. */
interface Running {
  url: string;
  db: string;
  stop(): Promise<void>;
}

/** How a team runs an example: `source` is the example under examples/, `extension` what it exports. */
type Start = (volumes: TestVolumes, example: { source: string; extension: MkvExtension }, env?: Record<string, string>) => Promise<Running>;

/** createServer({ config, ...mkvExtension }) in this process; `env` is set while the server starts (what it reads at start). */
const inProcess: Start = async (volumes, { extension }, env = {}) => {
  const saved = Object.fromEntries(Object.keys(env).map((name) => [name, process.env[name]]));
  Object.assign(process.env, env);
  try {
    const server = await TestServer.start({ volumes: volumes.urls, replicas: 2 }, extension);
    return { url: server.url, db: server.dbPath, stop: () => server.stop(), server };
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
};

/** `mkv --module <compiled example> ... serve`, a process of its own. */
const withModule: Start = async (volumes, { source }, env = {}) => {
  const db = join(volumes.root, 'index.db');
  const server = await ServerProcess.start(['--module', builtExample(source), '-d', db, '-v', volumes.urls.join(','), '-r', '2'], await freePort(), env);
  return { url: server.url, db, stop: () => server.stop(), process: server };
};

const MODES: [string, Start][] = [
  ['mkv --module <compiled example> serve', withModule],
  ['in process, createServer({ config, ...mkvExtension })', inProcess],
];

const COUNTING = { source: 'counting-volume-client/counting-volume-client.ts', extension: countingExtension };
const WRITE_TOKEN = { source: 'write-token-guard/write-token-guard.ts', extension: writeTokenExtension };

describe.each(MODES)('example: a VolumeClient decorator that counts (%s)', (_mode, start) => {
  let volumes: TestVolumes;
  let server: Running;

  beforeAll(async () => {
    volumes = await TestVolumes.start(3);
    server = await start(volumes, COUNTING);
  });
  afterAll(async () => {
    try {
      await server?.stop();
    } finally {
      await volumes?.stop();
    }
  });

  const counts = async () => {
    const res = await http('GET', `${server.url}/_admin/counting`);
    expect(res.status).toBe(200);
    return JSON.parse(res.text) as { requests: Record<string, number>; bytesPut: number };
  };

  it('passes the key API through unchanged, and counts every replica\'s bytes put (small, streamed, chunked)', async () => {
    const values = {
      'count/small': Buffer.from('a small value, read whole and sent to each volume in one write'),
      'count/large': randomBytes(300 * 1024), // over 64 KiB: streamed to the volumes
      'count/chunked': randomBytes(100 * 1024), // sent without a Content-Length: streamed, length unknown
    };
    const before = await counts();

    expect((await http('PUT', keyUrl(server.url, 'count/small'), { body: values['count/small'] })).status).toBe(201);
    expect((await http('PUT', keyUrl(server.url, 'count/large'), { body: values['count/large'] })).status).toBe(201);
    expect((await http('PUT', keyUrl(server.url, 'count/chunked'), { body: Readable.from([values['count/chunked']]) })).status).toBe(201);

    for (const [key, value] of Object.entries(values)) {
      const get = await http('GET', keyUrl(server.url, key));
      expect(get.status).toBe(302);
      expect((await http('GET', get.headers.location)).body.equals(value)).toBe(true);
      const head = await http('HEAD', keyUrl(server.url, key));
      expect([head.status, head.headers['content-md5'], head.headers['content-length']]).toEqual([200, md5(value), String(value.length)]);
    }
    const list = await http('GET', `${server.url}/?prefix=count/`);
    expect(JSON.parse(list.text)).toEqual({ keys: ['count/chunked', 'count/large', 'count/small'], next: '' });

    const after = await counts();
    const totalBytes = Object.values(values).reduce((sum, value) => sum + value.length, 0);
    expect(after.bytesPut - before.bytesPut).toBe(totalBytes * 2); // R = 2: each replica's PUT
    expect(after.requests.put - before.requests.put).toBe(6);
    // The large and chunked uploads renamed into place; the small new key was written straight to its paths.
    expect(after.requests.move - before.requests.move).toBe(4);

    for (const key of Object.keys(values)) {
      expect((await http('DELETE', keyUrl(server.url, key))).status).toBe(204);
      for (const volume of volumes.list) expect(volume.has(key)).toBe(false);
      expect((await http('GET', keyUrl(server.url, key))).status).toBe(404);
    }
    for (const volume of volumes.list) expect(volume.tempFiles()).toEqual([]);
    expect(readIndexRows(server.db)).toEqual([]);
    expect((await counts()).requests.delete - after.requests.delete).toBe(6);
  });

  if (start === inProcess) {
    it('keeps the stock client a Nest provider: the decorator serves VOLUME_CLIENT, and the stock pools are closed at shutdown', async () => {
      const { app } = (server as Running & { server: TestServer }).server;
      expect(app.get(VOLUME_CLIENT)).toBeInstanceOf(CountingVolumeClient);
      const stock = app.get(HttpVolumeClient);
      await server.stop();
      await expect(stock.probe(volumes.urls[0], 1000)).rejects.toThrow('client closed');
    });
  } else {
    it('stops gracefully on SIGTERM with the decorator in place, without an error logged', async () => {
      const mkv = (server as Running & { process: ServerProcess }).process;
      await server.stop();
      expect({ code: mkv.child.exitCode, signal: mkv.child.signalCode }).toEqual({ code: null, signal: 'SIGTERM' }); // Nest's graceful stop, re-raised
      expect(mkv.output).not.toMatch(/"level":(50|60)/); // pino's error and fatal
    });
  }
});

describe.each(MODES)('example: a write-token guard on every route (%s)', (_mode, start) => {
  const TOKEN = 'example-token-0f3c';
  const WITH_TOKEN = { authorization: `Bearer ${TOKEN}` };
  let volumes: TestVolumes;
  let server: Running;

  beforeAll(async () => {
    volumes = await TestVolumes.start(3);
    server = await start(volumes, WRITE_TOKEN, { MKV_WRITE_TOKEN: TOKEN });
  });
  afterAll(async () => {
    try {
      await server?.stop();
    } finally {
      await volumes?.stop();
    }
  });

  const nothingWritten = (key: string) => {
    for (const volume of volumes.list) {
      expect(volume.has(key)).toBe(false);
      expect(volume.tempFiles()).toEqual([]);
    }
    expect(readIndexRows(server.db).map((row) => row.key)).not.toContain(key);
  };

  it('a PUT without a token gets 401 in plain text with WWW-Authenticate: Bearer; nothing reaches a volume or the index', async () => {
    const res = await http('PUT', keyUrl(server.url, 'guarded/a'), { body: randomBytes(200 * 1024) });
    expect(res.status).toBe(401);
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(res.headers['www-authenticate']).toBe('Bearer');
    expect(res.text).toBe('a write needs a token: send Authorization: Bearer <token>');
    nothingWritten('guarded/a');
  });

  it('a PUT with a wrong token gets 401 "invalid write token"; nothing written', async () => {
    const res = await http('PUT', keyUrl(server.url, 'guarded/a'), { body: 'x', headers: { authorization: 'Bearer not-the-token' } });
    expect([res.status, res.text]).toEqual([401, 'invalid write token']);
    expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    nothingWritten('guarded/a');
  });

  it('a PUT with the token gets 201; reads stay open (GET 302, HEAD 200, list)', async () => {
    expect((await http('PUT', keyUrl(server.url, 'guarded/a'), { body: 'guarded value', headers: WITH_TOKEN })).status).toBe(201);
    const get = await http('GET', keyUrl(server.url, 'guarded/a'));
    expect(get.status).toBe(302);
    expect((await http('GET', get.headers.location)).text).toBe('guarded value');
    expect((await http('HEAD', keyUrl(server.url, 'guarded/a'))).headers['content-md5']).toBe(md5('guarded value'));
    expect(JSON.parse((await http('GET', `${server.url}/?prefix=guarded/`)).text).keys).toEqual(['guarded/a']);
    expect((await http('GET', `${server.url}/_admin/jobs`)).status).toBe(200);
  });

  it('UNLINK and DELETE without the token get 401 and the key stays live; with it they succeed', async () => {
    for (const method of ['UNLINK', 'DELETE']) {
      const res = await http(method, keyUrl(server.url, 'guarded/a'));
      expect([method, res.status, res.text]).toEqual([method, 401, 'a write needs a token: send Authorization: Bearer <token>']);
      expect((await http('GET', keyUrl(server.url, 'guarded/a'))).status).toBe(302);
    }
    expect(readIndexRows(server.db).find((row) => row.key === 'guarded/a')?.state).toBe('live');
    expect((await http('UNLINK', keyUrl(server.url, 'guarded/a'), { headers: WITH_TOKEN })).status).toBe(204);
    expect((await http('DELETE', keyUrl(server.url, 'guarded/a'), { headers: WITH_TOKEN })).status).toBe(204);
    for (const volume of volumes.list) expect(volume.has('guarded/a')).toBe(false);
  });

  it('POST /_admin/rebalance without the token gets 401 and starts no job; with it, 202', async () => {
    const refused = await http('POST', `${server.url}/_admin/rebalance?dryRun=true`);
    expect([refused.status, refused.text]).toEqual([401, 'a write needs a token: send Authorization: Bearer <token>']);
    expect(JSON.parse((await http('GET', `${server.url}/_admin/jobs`)).text).jobs).toEqual([]);
    const accepted = await http('POST', `${server.url}/_admin/rebalance?dryRun=true`, { headers: WITH_TOKEN });
    expect(accepted.status).toBe(202);
    expect((await jobFinished(server.url, accepted.headers.location)).state).toBe('succeeded');
  });
});

describe('example: the write-token guard refuses to start without its token', () => {
  let volumes: TestVolumes;
  beforeAll(async () => {
    volumes = await TestVolumes.start(1);
  });
  afterAll(() => volumes?.stop());

  it('mkv --module ... serve without MKV_WRITE_TOKEN exits 2 with one line saying so, before it listens', async () => {
    const module = builtExample(WRITE_TOKEN.source);
    const result = runMkv(['--module', module, '-d', join(volumes.root, 'index.db'), '-v', volumes.urls[0], '-r', '1', 'serve', '--port', String(await freePort())]);
    expect(result.status).toBe(2);
    // A ConfigError from a team's provider is a refusal to start, like mkv's own: one line, no stack.
    expect(result.stderr.trim()).toBe('mkv: MKV_WRITE_TOKEN is not set: the write-token guard needs the token that writes must bring');
    expect(result.stdout).toBe('');
  });
});
