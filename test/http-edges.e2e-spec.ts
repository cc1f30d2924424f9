import { connect } from 'node:net';
import { join } from 'node:path';
import type { JobView } from '../src/admin/jobs/job';
import { http, keyUrl } from './support/http';
import { jobFinished } from './support/jobs';
import { pollUntil } from './support/poll-until';
import { TestServer } from './support/server';
import { TestVolumes, stopServerAndVolumes } from './support/volumes';

const KEY_METHODS = 'GET, HEAD, PUT, DELETE, UNLINK';
const TEXT = 'text/plain; charset=utf-8';

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection after answering. */
  closed: boolean;
}

/**
 * Sends bytes no HTTP client would (a broken header line, 20 KiB of headers)
 * on a fresh TCP connection and reads the answer until the server closes it.
 */
function rawExchange(url: string, request: string): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((done, fail) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.setTimeout(5000, () => socket.destroy(new Error('the server neither answered nor closed the connection within 5 s')));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A reset after the answer (the server dropped a connection whose request it had not read to the end) is still a close.
    socket.on('error', (error) => (chunks.length === 0 ? fail(error) : undefined));
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const [head, ...rest] = text.split('\r\n\r\n');
      const [statusLine, ...headerLines] = head.split('\r\n');
      const headers = Object.fromEntries(
        headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
      );
      done({ status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n'), closed: true });
    });
    socket.write(request);
  });
}

/** The edges of the HTTP layer, against real nginx volumes and a real SQLite file. */
describe('HTTP edges', () => {
  let volumes: TestVolumes;
  let server: TestServer;

  // Keys written while the server knew two volumes; it now runs with three,
  // so a rebalance has real moves to make (and takes long enough to be seen running).
  beforeAll(async () => {
    volumes = await TestVolumes.start(3);
    const dir = join(volumes.root, 'index');
    const before = await TestServer.start({ dir, volumes: volumes.urls.slice(0, 2), replicas: 2 });
    try {
      for (let i = 0; i < 150; i++) {
        const res = await http('PUT', keyUrl(before.url, `edges/k${i}`), { body: `value ${i}` });
        if (res.status !== 201) throw new Error(`PUT edges/k${i} answered ${res.status}: ${res.text}`);
      }
    } finally {
      await before.stop();
    }
    server = await TestServer.start({ dir, volumes: volumes.urls, replicas: 2 });
  });
  afterAll(() => stopServerAndVolumes(server, volumes));

  const getJob = async (id: string): Promise<JobView> => JSON.parse((await http('GET', `${server.url}/_admin/jobs/${id}`)).text) as JobView;
  const jobCount = async () => (JSON.parse((await http('GET', `${server.url}/_admin/jobs`)).text) as { jobs: JobView[] }).jobs.length;

  describe('requests Node cannot parse answer plain text, not Fastify JSON', () => {
    it.each([
      ['a header line without a colon', 'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'],
      ['an unknown method token', 'FROB /k HTTP/1.1\r\nHost: x\r\n\r\n'],
      ['both Content-Length and Transfer-Encoding', 'PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ])('%s: 400 "malformed HTTP request", connection closed', async (_what, request) => {
      const res = await rawExchange(server.url, request);
      expect(res).toEqual({
        status: 400,
        headers: { 'content-type': TEXT, 'content-length': '22', connection: 'close' },
        body: 'malformed HTTP request',
        closed: true,
      });
      expect(volumes.list.some((volume) => volume.has('k'))).toBe(false);
    });

    // The router's own refusal (frameworkErrors) was plain text already, but kept the connection, with the body unread.
    it('a path the router cannot decode: 400 "invalid key: bad percent-encoding", connection closed', async () => {
      const res = await rawExchange(server.url, 'PUT /edges/bad%E0%A4%A HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
      expect({ status: res.status, type: res.headers['content-type'], connection: res.headers.connection, body: res.body }).toEqual({
        status: 400,
        type: TEXT,
        connection: 'close',
        body: 'invalid key: bad percent-encoding',
      });
      expect(res.closed).toBe(true);
    });

    it('20 KiB of headers: 431 "request headers too large", connection closed', async () => {
      const res = await rawExchange(server.url, `GET /edges/k1 HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
      expect(res).toEqual({
        status: 431,
        headers: { 'content-type': TEXT, 'content-length': '25', connection: 'close' },
        body: 'request headers too large',
        closed: true,
      });
    });
  });

  // A blob store does not interpret a value's media type; Fastify used to
  // answer 415 to a PUT whose Content-Type it could not parse.
  it.each(['a b', 'text/plain; charset', 'multipart/form-data'])('stores a PUT with Content-Type %j as its bytes: 201, on both replicas', async (contentType) => {
    // Outside edges/ and deleted after: the listing and rebalance tests here count the suite's keys.
    const key = `content-type/${encodeURIComponent(contentType)}`;
    const res = await http('PUT', keyUrl(server.url, key), { body: 'bytes as sent', headers: { 'content-type': contentType } });
    expect([res.status, res.text]).toEqual([201, '']);
    const holders = volumes.list.filter((volume) => volume.has(key));
    expect(holders.map((volume) => volume.read(key).toString())).toEqual(['bytes as sent', 'bytes as sent']);
    expect((await http('DELETE', keyUrl(server.url, key))).status).toBe(204);
  });

  describe('a method the key API does not take', () => {
    // Was Nest's "404 Cannot PATCH /edges/k1": a client could not tell a wrong method from a missing key.
    it.each(['PATCH', 'POST', 'OPTIONS', 'PROPFIND', 'MKCOL', 'COPY', 'MOVE', 'M-SEARCH'])(
      '%s on a key answers 405 with Allow and leaves the value as it was',
      async (method) => {
        const res = await http(method, keyUrl(server.url, 'edges/k1'), { body: 'other' });
        expect({ status: res.status, type: res.headers['content-type'], allow: res.headers.allow, body: res.text }).toEqual({
          status: 405,
          type: TEXT,
          allow: KEY_METHODS,
          body: `method ${method} not allowed (allowed: ${KEY_METHODS})`,
        });
        const [first] = volumes.list.filter((volume) => volume.has('edges/k1'));
        expect(first.read('edges/k1').toString()).toBe('value 1');
        const head = await http('HEAD', keyUrl(server.url, 'edges/k1'));
        expect(head.headers['content-length']).toBe(String('value 1'.length));
      },
    );

    it('on a missing key too (405, not 404), and POST / answers 405 Allow: GET', async () => {
      const missing = await http('PATCH', keyUrl(server.url, 'edges/none'));
      expect([missing.status, missing.headers.allow]).toEqual([405, KEY_METHODS]);
      const root = await http('POST', `${server.url}/`);
      expect({ status: root.status, allow: root.headers.allow, body: root.text }).toEqual({
        status: 405,
        allow: 'GET',
        body: 'method POST not allowed (allowed: GET)',
      });
    });
  });

  describe('/_admin', () => {
    // Was 400 "invalid key: _admin is reserved": a mistyped admin URL looked like a key error.
    it.each(['/_admin/nothing', '/_admin', '/_admin/', '/_admin/jobs/x/y', '/%5Fadmin/nothing', '/_admin/nothing?list'])(
      'GET %s answers 404 "not found", HEAD 404 without a body',
      async (path) => {
        const get = await http('GET', server.url, { rawPath: path });
        expect({ status: get.status, type: get.headers['content-type'], body: get.text }).toEqual({ status: 404, type: TEXT, body: 'not found' });
        const head = await http('HEAD', server.url, { rawPath: path });
        expect({ status: head.status, length: head.headers['content-length'], body: head.text }).toEqual({ status: 404, length: '0', body: '' });
      },
    );

    it.each([
      ['PATCH', '/_admin/jobs/x', 'GET, DELETE'],
      ['POST', '/_admin/health', 'GET, HEAD'],
      ['GET', '/_admin/rebalance', 'POST'],
      ['PROPFIND', '/_admin/volumes', 'GET'],
    ])('%s %s (an admin route, another method) answers 405 with Allow: %s', async (method, path, allow) => {
      const res = await http(method, `${server.url}${path}`);
      expect({ status: res.status, type: res.headers['content-type'], allow: res.headers.allow, body: res.text }).toEqual({
        status: 405,
        type: TEXT,
        allow,
        body: `method ${method} not allowed (allowed: ${allow})`,
      });
    });

    it.each([
      ['OPTIONS', '/_admin/nothing'],
      ['POST', '/_admin/jobs/x/y'],
    ])('%s %s (no admin route at that path) answers 404 "not found"', async (method, path) => {
      const res = await http(method, `${server.url}${path}`);
      expect({ status: res.status, type: res.headers['content-type'], body: res.text }).toEqual({ status: 404, type: TEXT, body: 'not found' });
    });

    it.each(['PUT', 'DELETE'])('%s /_admin/x is still a key request with a reserved key: 400', async (method) => {
      const res = await http(method, `${server.url}/_admin/x`, { body: method === 'PUT' ? 'x' : undefined });
      expect({ status: res.status, body: res.text }).toEqual({ status: 400, body: 'invalid key: _admin is reserved' });
      expect(volumes.list.some((volume) => volume.has('_admin'))).toBe(false);
    });

    // Was 400: exposeHeadRoutes is off, so HEAD reached the key API.
    it.each(['health', 'ready'])('HEAD /_admin/%s answers as its GET does, without a body', async (endpoint) => {
      await server.settleHealth();
      const get = await http('GET', `${server.url}/_admin/${endpoint}`);
      const head = await http('HEAD', `${server.url}/_admin/${endpoint}`);
      expect(get.status).toBe(200);
      expect({ status: head.status, type: head.headers['content-type'], body: head.text }).toEqual({
        status: 200,
        type: get.headers['content-type'],
        body: '',
      });
    });

    // Was: the HTTP adapter turned every UNLINK into DELETE, and DELETE /_admin/jobs/{id} cancels.
    it('UNLINK /_admin/jobs/{id} answers 405 (Allow: GET, DELETE) and does not cancel the running job', async () => {
      const started = await http('POST', `${server.url}/_admin/rebalance?concurrency=1`);
      expect(started.status).toBe(202);
      const { id } = JSON.parse(started.text) as JobView;
      await pollUntil(async () => ((await getJob(id)).counters.moved > 0 ? true : undefined), { intervalMs: 5, what: 'the first key to move' });

      const res = await http('UNLINK', `${server.url}/_admin/jobs/${id}`);
      expect({ status: res.status, type: res.headers['content-type'], allow: res.headers.allow, body: res.text }).toEqual({
        status: 405,
        type: TEXT,
        allow: 'GET, DELETE',
        body: 'method UNLINK not allowed (allowed: GET, DELETE)',
      });

      const view = await jobFinished(server.url, `/_admin/jobs/${id}`);
      expect(view.state).toBe('succeeded');
      expect(view.counters.failed).toBe(0);
      expect(view.counters.moved + view.counters.skipped).toBe(150);
    });
  });

  describe('number parameters take decimal digits only, and strict queries see every name', () => {
    // Number() turned each of these into a limit: 1e3 = 1000, 0x10 = 16, " 8" = 8.
    it.each(['1e3', '0x10', '%208', '8.0'])('GET /?limit=%s answers 400 "limit must be a whole number"', async (limit) => {
      const res = await http('GET', `${server.url}/?limit=${limit}`);
      expect({ status: res.status, type: res.headers['content-type'], body: res.text }).toEqual({
        status: 400,
        type: TEXT,
        body: 'limit must be a whole number',
      });
    });

    it('GET /?limit=2 still pages', async () => {
      const res = await http('GET', `${server.url}/?prefix=edges/&limit=2`);
      expect(JSON.parse(res.text)).toEqual({ keys: ['edges/k0', 'edges/k1'], next: 'edges/k10' });
    });

    // The strict check went through class-validator's whitelist, which never saw these own keys.
    it.each(['__proto__', 'constructor'])('POST /_admin/rebalance?%s=x answers 400 "unknown parameter <name>" and starts nothing', async (name) => {
      const before = await jobCount();
      const res = await http('POST', `${server.url}/_admin/rebalance?${name}=x`);
      expect({ status: res.status, type: res.headers['content-type'], body: res.text }).toEqual({
        status: 400,
        type: TEXT,
        body: `unknown parameter ${name}`,
      });
      const hex = await http('POST', `${server.url}/_admin/rebalance?concurrency=0x10`);
      expect([hex.status, hex.text]).toEqual([400, 'concurrency must be a whole number']);
      expect(await jobCount()).toBe(before);
    });
  });
});

/**
 * A request that reaches a server already shutting down (pipelined behind a
 * PUT still in flight, the one kind of connection the shutdown keeps open)
 * is refused in plain text; the PUT in flight still finishes.
 */
describe('HTTP edges: a request during shutdown', () => {
  let volumes: TestVolumes;
  let server: TestServer;

  beforeAll(async () => {
    volumes = await TestVolumes.start(2);
    server = await TestServer.start({ volumes: volumes.urls, replicas: 2 });
  });
  afterAll(() => stopServerAndVolumes(server, volumes));

  it('answers 503 "server is shutting down" as plain text, after the PUT in flight got its 201', async () => {
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const closed = new Promise<void>((done) => socket.on('close', () => done()));
    socket.on('error', () => undefined);
    const half = Buffer.alloc(1 << 20, 'a');
    socket.write(`PUT /shutdown/in-flight HTTP/1.1\r\nHost: x\r\nContent-Length: ${2 * half.length}\r\n\r\n`);
    socket.write(half);
    await pollUntil(() => (volumes.list.every((volume) => volume.bodiesReceiving() > 0) ? true : undefined), { what: 'the upload to reach both volumes' });

    const stopping = server.stop();
    // Once the listener is closed the shutdown is under way: no new connection is taken.
    await pollUntil(async () => ((await http('GET', `${server.url}/_admin/health`).catch(() => undefined)) === undefined ? true : undefined), {
      what: 'the server to stop listening',
    });
    socket.write(Buffer.concat([half, Buffer.from('GET /shutdown/in-flight HTTP/1.1\r\nHost: x\r\n\r\n')]));
    await closed;
    await stopping;

    const answers = Buffer.concat(received).toString().split(/(?=HTTP\/1\.1 )/);
    expect(answers.map((answer) => answer.split('\r\n')[0])).toEqual(['HTTP/1.1 201 Created', 'HTTP/1.1 503 Service Unavailable']);
    expect(answers[1]).toMatch(/\r\ncontent-type: text\/plain; charset=utf-8\r\n/i);
    expect(answers[1].endsWith('\r\n\r\nserver is shutting down')).toBe(true);
    for (const volume of volumes.list) expect(volume.read('shutdown/in-flight').length).toBe(2 * half.length);
  });
});
