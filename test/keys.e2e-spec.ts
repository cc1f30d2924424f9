import Database from 'better-sqlite3';
import { mkdirSync, writeFileSync } from 'node:fs';
import { placeKey } from '../src/hashing/rendezvous';
import { putExpectingContinue } from './support/expect-continue';
import { http, keyUrl, md5 } from './support/http';
import { readIndexRows } from './support/index-rows';
import { TestServer } from './support/server';
import { TestVolumes, stopServerAndVolumes } from './support/volumes';

/** The key API against three real nginx volumes and a real SQLite file. */
describe('key API', () => {
  let volumes: TestVolumes;
  let server: TestServer;

  beforeAll(async () => {
    volumes = await TestVolumes.start(3);
    server = await TestServer.start({ volumes: volumes.urls, replicas: 2 });
  });
  afterAll(() => stopServerAndVolumes(server, volumes));

  const put = (key: string, body: string | Buffer, headers?: Record<string, string>) =>
    http('PUT', keyUrl(server.url, key), { body, headers });
  /** The volumes the README's placement formula names for a key. */
  const replicasOf = (key: string) => placeKey(key, volumes.urls, 2).map((url) => volumes.byUrl(url));
  const others = (key: string) => volumes.list.filter((v) => !placeKey(key, volumes.urls, 2).includes(v.url));

  describe('PUT', () => {
    it('answers 201 for a new key and stores the bytes on exactly its R replicas', async () => {
      const res = await put('photos/cat.jpg', 'meow');
      expect(res.status).toBe(201);
      for (const volume of replicasOf('photos/cat.jpg')) expect(volume.read('photos/cat.jpg').toString()).toBe('meow');
      for (const volume of others('photos/cat.jpg')) expect(volume.has('photos/cat.jpg')).toBe(false);
    });

    it('answers 204 when it overwrites a live value, and every replica has the new bytes', async () => {
      await put('over/write', 'first');
      const res = await put('over/write', 'second value');
      expect(res.status).toBe(204);
      for (const volume of replicasOf('over/write')) expect(volume.read('over/write').toString()).toBe('second value');
      expect((await http('HEAD', keyUrl(server.url, 'over/write'))).headers['content-length']).toBe('12');
    });

    it('streams a JSON or text body as bytes instead of parsing it', async () => {
      const body = '{"not": "parsed"}';
      expect((await put('doc.json', body, { 'content-type': 'application/json' })).status).toBe(201);
      expect((await put('doc.txt', 'plain', { 'content-type': 'text/plain' })).status).toBe(201);
      expect(replicasOf('doc.json')[0].read('doc.json').toString()).toBe(body);
    });

    it('answers 411 "empty value" for an empty body and writes nothing', async () => {
      const res = await put('empty/one', '');
      expect(res.status).toBe(411);
      expect(res.text).toBe('empty value');
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      for (const volume of volumes.list) expect(volume.has('empty/one')).toBe(false);
      expect((await http('HEAD', keyUrl(server.url, 'empty/one'))).status).toBe(404);
    });

    it('leaves no temporary upload behind', async () => {
      await put('tidy', 'x');
      for (const volume of volumes.list) expect(volume.tempFiles()).toEqual([]);
    });
  });

  describe('GET and HEAD', () => {
    it('GET redirects to the first replica with Content-Md5, ETag and Last-Modified', async () => {
      await put('get/me', 'hello');
      const before = Date.now();
      const res = await http('GET', keyUrl(server.url, 'get/me'));
      expect(res.status).toBe(302);
      expect(res.headers.location).toBe(`${placeKey('get/me', volumes.urls, 2)[0]}/get/me`);
      expect(res.headers['content-md5']).toBe(md5('hello'));
      expect(res.headers.etag).toBe(`"${md5('hello')}"`);
      expect(Date.parse(res.headers['last-modified'])).toBeLessThanOrEqual(before);
      expect(res.body.length).toBe(0);
      const followed = await http('GET', res.headers.location);
      expect(followed.text).toBe('hello');
    });

    it('HEAD answers 200 with the value size and its MD5', async () => {
      await put('head/me', 'twelve bytes');
      const res = await http('HEAD', keyUrl(server.url, 'head/me'));
      expect(res.status).toBe(200);
      expect(res.headers['content-length']).toBe('12');
      expect(res.headers['content-md5']).toBe(md5('twelve bytes'));
      expect(res.headers.etag).toBe(`"${md5('twelve bytes')}"`);
    });

    it('answers 404 "not found" for a missing key, and HEAD 404 with Content-Length 0', async () => {
      const res = await http('GET', keyUrl(server.url, 'no/such/key'));
      expect(res.status).toBe(404);
      expect(res.text).toBe('not found');
      const head = await http('HEAD', keyUrl(server.url, 'no/such/key'));
      expect(head.status).toBe(404);
      expect(head.headers['content-length']).toBe('0');
    });

    it.each([
      ['a key with spaces', 'with space/and more spaces.txt'],
      ['a unicode key', 'unicode/日本語/ñandú/😀'],
      ['a key with percent-escapes', 'percent/100%/a%2Bb'],
      ['a key with reserved URL characters', "chars/a+b=c&d;e,f@g!h$i'j(k)l*m"],
    ])('round-trips %s byte-exact', async (_name, key) => {
      const body = Buffer.from(`value of ${key}`);
      expect((await put(key, body)).status).toBe(201);
      const res = await http('GET', keyUrl(server.url, key));
      expect(res.status).toBe(302);
      const followed = await http('GET', res.headers.location);
      expect(followed.status).toBe(200);
      expect(followed.body.equals(body)).toBe(true);
      for (const volume of replicasOf(key)) expect(volume.read(key).equals(body)).toBe(true);
      const listed = await http('GET', `${server.url}/?prefix=${encodeURIComponent(key)}`);
      expect(JSON.parse(listed.text).keys).toEqual([key]);
    });

    it('answers 500 "corrupt record" for a record with no volumes', async () => {
      await put('corrupt/me', 'x');
      const db = new Database(server.dbPath);
      db.prepare("UPDATE keys SET volumes = '' WHERE key = ?").run('corrupt/me');
      db.close();
      const res = await http('GET', keyUrl(server.url, 'corrupt/me'));
      expect(res.status).toBe(500);
      expect(res.text).toBe('corrupt record for key corrupt/me: no volumes');
    });
  });

  describe('DELETE and UNLINK', () => {
    it('DELETE removes the key and its blobs: 204, then 404', async () => {
      await put('del/me', 'bye');
      const res = await http('DELETE', keyUrl(server.url, 'del/me'));
      expect(res.status).toBe(204);
      for (const volume of volumes.list) expect(volume.has('del/me')).toBe(false);
      expect((await http('GET', keyUrl(server.url, 'del/me'))).status).toBe(404);
      const again = await http('DELETE', keyUrl(server.url, 'del/me'));
      expect(again.status).toBe(404);
      expect(again.text).toBe('not found');
    });

    it('UNLINK hides the key but keeps its blobs; it is listed as unlinked; DELETE then removes the blobs', async () => {
      await put('soft/gone', 'still here');
      expect((await http('UNLINK', keyUrl(server.url, 'soft/gone'))).status).toBe(204);
      expect((await http('GET', keyUrl(server.url, 'soft/gone'))).status).toBe(404);
      expect((await http('HEAD', keyUrl(server.url, 'soft/gone'))).status).toBe(404);
      expect((await http('UNLINK', keyUrl(server.url, 'soft/gone'))).status).toBe(404);
      for (const volume of replicasOf('soft/gone')) expect(volume.read('soft/gone').toString()).toBe('still here');
      expect(JSON.parse((await http('GET', `${server.url}/soft?unlinked`)).text).keys).toEqual(['/soft/gone']);
      expect(JSON.parse((await http('GET', `${server.url}/soft?list`)).text).keys).toEqual([]);

      expect((await http('DELETE', keyUrl(server.url, 'soft/gone'))).status).toBe(204);
      for (const volume of volumes.list) expect(volume.has('soft/gone')).toBe(false);
    });

    it('a PUT after UNLINK makes the key live again (201: there was no live value)', async () => {
      await put('soft/back', 'old');
      await http('UNLINK', keyUrl(server.url, 'soft/back'));
      expect((await put('soft/back', 'new')).status).toBe(201);
      const res = await http('GET', keyUrl(server.url, 'soft/back'));
      expect(res.headers['content-md5']).toBe(md5('new'));
    });

    it('UNLINK of a missing key answers 404', async () => {
      const res = await http('UNLINK', keyUrl(server.url, 'never/was'));
      expect(res.status).toBe(404);
      expect(res.text).toBe('not found');
    });
  });

  describe('listing', () => {
    beforeAll(async () => {
      for (const key of ['list/b', 'list/a', 'list/c/d', 'list/é', 'list/z', 'listx']) await put(key, key);
      await http('UNLINK', keyUrl(server.url, 'list/z'));
    });

    it('GET /?prefix= lists live keys with that prefix in byte order, without a leading /', async () => {
      const res = await http('GET', `${server.url}/?prefix=list/`);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(res.text)).toEqual({ keys: ['list/a', 'list/b', 'list/c/d', 'list/é'], next: '' });
    });

    it('pages with limit and start; next is the start of the following page', async () => {
      const first = JSON.parse((await http('GET', `${server.url}/?prefix=list/&limit=3`)).text);
      expect(first).toEqual({ keys: ['list/a', 'list/b', 'list/c/d'], next: 'list/é' });
      const second = JSON.parse((await http('GET', `${server.url}/?prefix=list/&limit=3&start=${encodeURIComponent(first.next)}`)).text);
      expect(second).toEqual({ keys: ['list/é'], next: '' });
    });

    it('minikeyvalue forms: /{prefix}?list and ?unlinked, keys with a leading /', async () => {
      expect(JSON.parse((await http('GET', `${server.url}/list/c?list`)).text)).toEqual({ keys: ['/list/c/d'], next: '' });
      expect(JSON.parse((await http('GET', `${server.url}/list?list&limit=2`)).text)).toEqual({ keys: ['/list/a', '/list/b'], next: '/list/c/d' });
      expect(JSON.parse((await http('GET', `${server.url}/list?unlinked`)).text)).toEqual({ keys: ['/list/z'], next: '' });
    });

    // The listing is its own route, chosen by the query: its parameters are checked there only, never on a key's GET.
    it('a key GET with listing parameters still redirects; the same parameters on ?list are checked', async () => {
      const key = await http('GET', `${server.url}/list/a?limit=ten&start=x&prefix=1&prefix=2`);
      expect([key.status, key.headers.location]).toEqual([302, expect.stringMatching(/\/list\/a$/)]);
      for (const flag of ['list', 'unlinked', 'li%73t']) {
        const listing = await http('GET', `${server.url}/list?${flag}&limit=ten`);
        expect([listing.status, listing.text]).toEqual([400, 'limit must be a whole number']);
      }
      const admin = await http('GET', `${server.url}/_admin/jobs/x/y?unlinked&limit=ten`);
      expect([admin.status, admin.text]).toEqual([404, 'not found']);
    });

    it.each([
      ['0', 'limit must be at least 1'],
      ['10001', 'limit must be at most 10000'],
      ['ten', 'limit must be a whole number'],
    ])('answers 400 for limit=%s', async (limit, message) => {
      const res = await http('GET', `${server.url}/?limit=${limit}`);
      expect(res.status).toBe(400);
      expect(res.text).toBe(message);
    });
  });

  describe('invalid keys', () => {
    it.each([
      ['/a//b', 'empty path segment'],
      ['/a/', 'ends with /'],
      ['/a/.hidden', 'a path segment starts with .'],
      ['/a/..', 'a path segment starts with .'],
      ['/a/%2E%2E/b', 'a path segment starts with .'],
      ['/_admin/x', '_admin is reserved'],
      ['/a%00b', 'contains a control character'],
      ['/a%0Ab', 'contains a control character'],
      ['/a%C2%85b', 'contains a control character'], // C1 NEL
      ['/a%C2%9B31m', 'contains a control character'], // C1 CSI, a terminal escape
      ['/a%E0%A4%A', 'bad percent-encoding'],
      ['/a%2', 'bad percent-encoding'],
      [`/${'k'.repeat(200)}/${'k'.repeat(200)}/${'k'.repeat(200)}/${'k'.repeat(200)}/${'k'.repeat(200)}/${'k'.repeat(30)}`, 'longer than 1024 bytes'],
      [`/${'k'.repeat(256)}`, 'a path segment is longer than 255 bytes'],
    ])('PUT %s answers 400 "invalid key: %s"', async (path, reason) => {
      const res = await http('PUT', server.url, { rawPath: path, body: 'x' });
      expect(res.status).toBe(400);
      expect(res.text).toBe(`invalid key: ${reason}`);
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
    });

    it('refuses a key with a C1 control character (%C2%85) before any byte reaches a volume', async () => {
      const res = await http('PUT', server.url, { rawPath: '/c1/a%C2%85b', body: 'x' });
      expect(res.status).toBe(400);
      expect(res.text).toBe('invalid key: contains a control character');
      for (const volume of volumes.list) expect(volume.has('c1')).toBe(false);
    });

    it('accepts a key of exactly 1024 bytes', async () => {
      const key = Array.from({ length: 5 }, () => 'k'.repeat(204)).join('/');
      expect(Buffer.byteLength(key)).toBe(1024);
      expect((await put(key, 'long')).status).toBe(201);
      expect((await http('HEAD', keyUrl(server.url, key))).status).toBe(200);
    });
  });

  // Issue 10: Node answered `100 Continue` before the key was even looked at,
  // so a client sent its whole body only to be refused.
  describe('Expect: 100-continue', () => {
    beforeAll(async () => {
      expect((await put('expect/leaf', 'x')).status).toBe(201);
    });

    it.each([
      ['/_admin/x', 400, 'invalid key: _admin is reserved'],
      ['/a/.b', 400, 'invalid key: a path segment starts with .'],
      ['/expect/leaf/child', 409, 'key expect/leaf/child conflicts with existing key expect/leaf'],
    ])('PUT %s is answered %i before the client sends its body, without 100 Continue', async (path, status, text) => {
      const { socket, first } = await putExpectingContinue(server.url, path, 'the body');
      try {
        expect(first).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
        expect(first).toMatch(/\r\nconnection: close\r\n/i);
        expect(first.endsWith(text)).toBe(true);
      } finally {
        socket.destroy();
      }
      for (const volume of volumes.list) expect(volume.has('expect/leaf/child')).toBe(false);
    });

    it('a valid key receives 100 Continue, then 201 after the body', async () => {
      const { socket, first, sendBody } = await putExpectingContinue(server.url, '/expect/fine', 'continued');
      try {
        expect(first).toBe('HTTP/1.1 100 Continue\r\n\r\n');
        expect(await sendBody()).toMatch(/^HTTP\/1\.1 201 /);
      } finally {
        socket.destroy();
      }
      for (const volume of replicasOf('expect/fine')) expect(volume.read('expect/fine').toString()).toBe('continued');
    });
  });

  describe('directory/file conflicts', () => {
    it('refuses a key below an existing key with 409 and writes nothing', async () => {
      await put('tree/leaf', 'file');
      const res = await put('tree/leaf/child', 'x');
      expect(res.status).toBe(409);
      expect(res.text).toBe('key tree/leaf/child conflicts with existing key tree/leaf');
      for (const volume of volumes.list) expect(volume.has('tree/leaf/child')).toBe(false);
    });

    it('refuses a key above an existing key with 409, also when that key is unlinked', async () => {
      await put('tree2/a/b', 'file');
      await http('UNLINK', keyUrl(server.url, 'tree2/a/b'));
      const res = await put('tree2/a', 'x');
      expect(res.status).toBe(409);
      expect(res.text).toBe('key tree2/a conflicts with existing key tree2/a/b');
    });

    it('a key whose only descendant was deleted can be written (the empty directory is cleared)', async () => {
      await put('gone/dir/leaf', 'x');
      await http('DELETE', keyUrl(server.url, 'gone/dir/leaf'));
      expect((await put('gone/dir', 'now a file')).status).toBe(201);
      for (const volume of replicasOf('gone/dir')) expect(volume.read('gone/dir').toString()).toBe('now a file');
    });

    it('a key whose deleted descendants left nested empty directories can be written (they are cleared)', async () => {
      await put('nested/dir/a/b/leaf', 'x');
      await http('DELETE', keyUrl(server.url, 'nested/dir/a/b/leaf'));
      // Where the two keys share a volume (two of three replicas: at least one), `nested/dir/a/b/` is left there.
      const shared = replicasOf('nested/dir').filter((volume) => replicasOf('nested/dir/a/b/leaf').includes(volume));
      expect(shared.length).toBeGreaterThan(0);
      for (const volume of shared) expect(volume.has('nested/dir/a/b')).toBe(true);
      expect((await put('nested/dir', 'now a file')).status).toBe(201);
      for (const volume of replicasOf('nested/dir')) expect(volume.read('nested/dir').toString()).toBe('now a file');
    });

    // Issue 10: a 409 from MOVE used to be answered with a recursive DELETE of
    // `foo/`, silently removing files no key owns.
    it('a directory holding a file no key owns gives 409 and keeps that file: no silent delete', async () => {
      const key = 'foo';
      const [first, second] = replicasOf(key);
      mkdirSync(first.filePath('foo'));
      writeFileSync(first.filePath('foo/stray'), 'a blob no key owns');
      const res = await put(key, 'x'.repeat(100_000)); // large: streamed, conflict met at the rename
      expect(res.status).toBe(409);
      expect(res.text).toBe('key foo conflicts with an existing path on a volume');
      expect(first.read('foo/stray').toString()).toBe('a blob no key owns');
      expect(second.has('foo')).toBe(false);
      expect(readIndexRows(server.dbPath).filter((row) => row.key === key)).toEqual([]);
      for (const volume of volumes.list) expect(volume.tempFiles()).toEqual([]);
      expect((await put(key, 'small')).status).toBe(409); // read whole first: the same answer
      expect(first.read('foo/stray').toString()).toBe('a blob no key owns');
    });

    it('a stray file on a volume where the key needs a directory gives 409, not 502, and nothing is written', async () => {
      // A file no key owns (say, a blob whose delete failed) sits where `stray/f` needs a directory.
      const key = 'stray/f/value';
      const [first] = replicasOf(key);
      await http('PUT', `${first.url}/stray/f`, { body: 'orphan' });
      const res = await put(key, 'x');
      expect(res.status).toBe(409);
      expect(res.text).toBe(`key ${key} conflicts with an existing path on a volume`);
      for (const volume of volumes.list) expect(volume.has(key)).toBe(false);
      expect((await http('HEAD', keyUrl(server.url, key))).status).toBe(404);
    });
  });
});

describe('key API options', () => {
  let volumes: TestVolumes;
  beforeAll(async () => {
    volumes = await TestVolumes.start(2);
  });
  afterAll(async () => volumes?.stop());

  it('answers 503 when fewer volumes are configured than replicas, before writing anything', async () => {
    const server = await TestServer.start({ volumes: volumes.urls, replicas: 3 });
    try {
      const res = await http('PUT', keyUrl(server.url, 'needs/three'), { body: 'x' });
      expect(res.status).toBe(503);
      expect(res.text).toBe('need 3 volumes but only 2 available');
      for (const volume of volumes.list) expect(volume.has('needs/three')).toBe(false);
    } finally {
      await server.stop();
    }
  });

  it('--protect refuses DELETE of a live key with 403 until it is unlinked', async () => {
    const server = await TestServer.start({ volumes: volumes.urls, replicas: 2, protect: true });
    try {
      await http('PUT', keyUrl(server.url, 'kept'), { body: 'x' });
      const res = await http('DELETE', keyUrl(server.url, 'kept'));
      expect(res.status).toBe(403);
      expect(res.text).toBe('key must be unlinked before delete');
      expect(volumes.list.every((v) => v.has('kept'))).toBe(true);
      expect((await http('UNLINK', keyUrl(server.url, 'kept'))).status).toBe(204);
      expect((await http('DELETE', keyUrl(server.url, 'kept'))).status).toBe(204);
      expect(volumes.list.some((v) => v.has('kept'))).toBe(false);
    } finally {
      await server.stop();
    }
  });

  it('--fallback redirects GETs of unknown keys to the fallback server', async () => {
    const server = await TestServer.start({ volumes: volumes.urls, replicas: 1, fallback: 'http://old.example:3000/' });
    try {
      const res = await http('GET', keyUrl(server.url, 'legacy/ké y'));
      expect(res.status).toBe(302);
      expect(res.headers.location).toBe('http://old.example:3000/legacy/k%C3%A9%20y');
    } finally {
      await server.stop();
    }
  });

  it('--subvolumes stores each blob under /svXX as the placement formula says', async () => {
    const server = await TestServer.start({ volumes: volumes.urls, replicas: 2, subvolumes: 16 });
    try {
      await http('PUT', keyUrl(server.url, 'sub/key'), { body: 'in a subvolume' });
      const res = await http('GET', keyUrl(server.url, 'sub/key'));
      const match = /^(http:\/\/[^/]+)\/sv([0-9A-F]{2})\/sub\/key$/.exec(res.headers.location);
      expect(match).not.toBeNull();
      expect(volumes.byUrl(match![1]).read(`sv${match![2]}/sub/key`).toString()).toBe('in a subvolume');
      expect((await http('GET', res.headers.location)).text).toBe('in a subvolume');
    } finally {
      await server.stop();
    }
  });
});
