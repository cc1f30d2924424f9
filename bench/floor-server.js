#!/usr/bin/env node
/**
 * The floor under mkv's figures: a bare Fastify server doing only the work
 * an operation cannot go without, with mkv's own drivers (better-sqlite3,
 * undici pools, the same pass-through body parser), and nothing else: no
 * Nest, no request id, no metrics, no key locks, no write protocol (no
 * temporary name, no MOVE, no index change, no digest). A target below this
 * floor is out of reach of any tuning of mkv on the same machine.
 *
 *   GET /<key>     one point read in mkv's index file, then a 302 with the
 *                  headers mkv's GET sends (Location, ETag, Content-MD5,
 *                  Last-Modified)
 *   HEAD /<key>    one point read, then the headers mkv's HEAD sends (the
 *                  value's Content-Length, ETag, Content-MD5, Last-Modified),
 *                  no body
 *   PUT /<key>     the value to two volumes at once: read whole first when it
 *                  declares at most 64 KiB (as mkv does), streamed otherwise;
 *                  a key that exists is simply written again (nginx replaces
 *                  the file), so new keys and overwrites cost the floor alike;
 *                  201 as mkv answers a new key, 204 when both files existed
 *   DELETE /<key>  DELETE of the same two files at once; 404 when neither existed
 *
 *   node bench/floor-server.js <port> <index.db> <volume-url>,<volume-url>[,...]
 */
const Database = require('better-sqlite3');
// No automatic HEAD routes: HEAD has its own route below, as in mkv.
const fastify = require('fastify')({ logger: false, exposeHeadRoutes: false });
const { PassThrough } = require('node:stream');
const { Pool } = require('undici');

const [port, dbPath, volumeList] = process.argv.slice(2);
const volumes = volumeList.split(',');
const pools = volumes.map((url) => new Pool(url, { connections: 512, keepAliveTimeout: 60_000 }));
const db = new Database(dbPath, { readonly: true, fileMustExist: true });
const lookup = db.prepare('SELECT volumes, size, md5, updated_at FROM keys WHERE key = ?');
const SMALL_VALUE_BYTES = 64 * 1024;

/** Two volumes for a key, by a cheap hash: the load spreads as mkv's does. */
function targetsOf(key) {
  const first = (key.length + key.charCodeAt(key.length - 1)) % volumes.length;
  return [first, (first + 1) % volumes.length];
}

/** One volume request whose answer is its status (mkv's StatusExchange, without abort signals). */
function send(volume, method, path, body, headers) {
  return new Promise((resolve, reject) => {
    let status = 0;
    pools[volume].dispatch(
      { path, method, body, headers },
      {
        onRequestStart() {},
        onResponseStart(_controller, code) {
          status = code;
        },
        onResponseData() {},
        onResponseEnd: () => resolve(status),
        onResponseError: (_controller, error) => reject(error),
      },
    );
  });
}

function readWhole(stream) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    stream.on('data', (chunk) => chunks.push(chunk)).once('end', () => resolve(Buffer.concat(chunks))).once('error', reject);
  });
}

const keyOf = (request) => decodeURIComponent(request.raw.url.slice(1));

fastify.removeAllContentTypeParsers();
fastify.addContentTypeParser('*', (_request, _payload, done) => done(null));

/** The headers mkv sends with a value's GET and HEAD. */
function valueHeaders(reply, row) {
  reply.header('content-md5', row.md5).header('etag', `"${row.md5}"`).header('last-modified', new Date(row.updated_at).toUTCString());
}

fastify.get('/*', (request, reply) => {
  const row = lookup.get(keyOf(request));
  if (row === undefined) return reply.code(404).send();
  reply.code(302).header('location', `${row.volumes.split(',')[0]}/${request.raw.url.slice(1)}`);
  valueHeaders(reply, row);
  reply.send();
});

fastify.head('/*', (request, reply) => {
  const row = lookup.get(keyOf(request));
  if (row === undefined) return reply.code(404).send();
  valueHeaders(reply, row);
  // Fastify keeps a HEAD answer's Content-Length as set when it sends no body.
  reply.header('content-length', String(row.size)).send();
});

fastify.put('/*', async (request, reply) => {
  const path = `/floor${request.raw.url}`;
  const targets = targetsOf(path);
  const length = Number(request.headers['content-length']);
  const headers = ['content-type', 'application/octet-stream', 'content-length', String(length)];
  let bodies;
  if (length <= SMALL_VALUE_BYTES) {
    const value = await readWhole(request.raw);
    bodies = targets.map(() => value);
  } else {
    // Node's own fan-out: pipe() to several destinations moves at the slowest one's pace.
    bodies = targets.map(() => request.raw.pipe(new PassThrough()));
  }
  const statuses = await Promise.all(targets.map((volume, i) => send(volume, 'PUT', path, bodies[i], headers)));
  // As mkv answers: 201 for a new value, 204 for one that replaced another (nginx says which).
  if (!statuses.every((s) => s === 201 || s === 204)) return reply.code(502).send();
  reply.code(statuses.every((s) => s === 204) ? 204 : 201).send();
});

fastify.delete('/*', async (request, reply) => {
  const path = `/floor${request.raw.url}`;
  const statuses = await Promise.all(targetsOf(path).map((volume) => send(volume, 'DELETE', path)));
  // 404 when neither volume had the file, as mkv answers a key it does not hold: the bench counts it.
  if (!statuses.every((s) => s === 204 || s === 404)) return reply.code(502).send();
  reply.code(statuses.every((s) => s === 404) ? 404 : 204).send();
});

fastify.listen({ port: Number(port), host: '127.0.0.1' }).then(() => console.log('listening'));
