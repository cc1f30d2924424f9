import { join } from 'node:path';
import type { JobView } from '../src/jobs/job';
import { http, keyUrl } from './support/http';
import { TestServer } from './support/server';
import { TestVolumes, stopServerAndVolumes } from './support/volumes';

const TEXT = 'text/plain; charset=utf-8';

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

  const jobCount = async () => (JSON.parse((await http('GET', `${server.url}/_admin/jobs`)).text) as { jobs: JobView[] }).jobs.length;

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
