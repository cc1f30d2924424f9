import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { request } from 'undici';
import { placeKey } from '../src/hashing/rendezvous';
import { http, keyUrl } from './support/http';
import { ServerProcess } from './support/cli';
import { GeneratedBody } from './support/streams';
import { freePort, TestVolumes, stopServerAndVolumes } from './support/volumes';

const SIZE = 200 << 20; // 200 MiB
const RSS_GROWTH_LIMIT = 64 << 20;

/** A value far larger than the server may hold: streamed through, never buffered. */
describe('a 200 MiB value', () => {
  let volumes: TestVolumes;
  let server: ServerProcess;

  beforeAll(async () => {
    volumes = await TestVolumes.start(3);
    server = await ServerProcess.start(['-d', `${volumes.root}/index.db`, '-v', volumes.urls.join(','), '-r', '2'], await freePort());
  });
  afterAll(() => stopServerAndVolumes(server, volumes));

  it('round-trips byte-exact while the server RSS grows by less than 64 MB', async () => {
    const key = 'big/value.bin';
    // Warm up with a 32 MiB PUT first: the baseline then holds the steady
    // state (code, connections, malloc arenas, the garbage V8 lets build up
    // before it collects), and the growth is what the 200 MiB value adds.
    await http('PUT', keyUrl(server.url, 'big/warm-up'), { body: Buffer.alloc(32 << 20, 1) });
    const before = server.memory().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, server.memory().rss)), 20);

    const body = new GeneratedBody(SIZE);
    const res = await http('PUT', keyUrl(server.url, key), { body, headers: { 'content-length': String(SIZE) } });
    clearInterval(sampler);
    peak = Math.max(peak, server.memory().rss);
    expect(res.status).toBe(201);

    const growth = peak - before;
    console.log(
      `200 MiB PUT: server RSS before ${(before / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB, growth ${(growth / 2 ** 20).toFixed(1)} MiB (limit 64)`,
    );
    expect(growth).toBeLessThan(RSS_GROWTH_LIMIT);

    const head = await http('HEAD', keyUrl(server.url, key));
    expect(head.headers['content-length']).toBe(String(SIZE));
    expect(head.headers['content-md5']).toBe(body.md5());

    // What a client reads back through the redirect, hashed as it streams.
    const redirect = await http('GET', keyUrl(server.url, key));
    const download = await request(redirect.headers.location);
    const downloaded = createHash('md5');
    for await (const chunk of download.body) downloaded.update(chunk);
    expect(downloaded.digest('hex')).toBe(body.md5());

    // And the bytes on both replicas' disks.
    for (const url of placeKey(key, volumes.urls, 2)) {
      const onDisk = createHash('md5');
      for await (const chunk of createReadStream(volumes.byUrl(url).filePath(key))) onDisk.update(chunk);
      expect(onDisk.digest('hex')).toBe(body.md5());
    }
  });

  // The MD5 of streamed values is computed on a worker thread shared by every
  // upload: values streamed at once must each be stored with the digest of
  // their own bytes, whether the client declares a length or sends chunks.
  it('streamed PUTs at once each store the MD5 of their own bytes (ETag, Content-MD5 and the replicas agree)', async () => {
    const bodies = Array.from({ length: 8 }, (_, i) => new GeneratedBody((3 << 20) + i * 70_001));
    const answers = await Promise.all(
      bodies.map((body, i) =>
        http('PUT', keyUrl(server.url, `many/${i}`), { body, headers: i % 2 === 0 ? { 'content-length': String(body.totalBytes) } : {} }),
      ),
    );
    expect(answers.map((answer) => answer.status)).toEqual(bodies.map(() => 201));
    for (const [i, body] of bodies.entries()) {
      const head = await http('HEAD', keyUrl(server.url, `many/${i}`));
      expect([head.headers['content-length'], head.headers['content-md5'], head.headers.etag]).toEqual([String(body.totalBytes), body.md5(), `"${body.md5()}"`]);
      for (const url of placeKey(`many/${i}`, volumes.urls, 2)) {
        const onDisk = createHash('md5');
        for await (const chunk of createReadStream(volumes.byUrl(url).filePath(`many/${i}`))) onDisk.update(chunk);
        expect(onDisk.digest('hex')).toBe(body.md5());
      }
    }
  });
});
