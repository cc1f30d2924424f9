import Database from 'better-sqlite3';
import { placeKey } from '../src/hashing/rendezvous';
import { http } from './support/http';
import { pollUntil } from './support/poll-until';
import { TestServer } from './support/server';
import { TestVolumes, stopServerAndVolumes } from './support/volumes';

const KEYS = 30_000;

/**
 * A job whose work is all synchronous SQLite (a dry run, keys already in
 * place) must still let the server answer: here, the cancel of that very job.
 */
describe('a long job keeps the server answering', () => {
  let volumes: TestVolumes;
  let server: TestServer;

  beforeAll(async () => {
    volumes = await TestVolumes.start(3);
    server = await TestServer.start({ volumes: volumes.urls, replicas: 2 });
    // Rows as PUTs would leave them, written straight into the index file (no volume is read by a dry run).
    const db = new Database(server.dbPath);
    const insert = db.prepare("INSERT INTO keys VALUES (?, ?, 1, '', 'live', 1, 1)");
    db.transaction(() => {
      for (let i = 0; i < KEYS; i++) insert.run(`bulk/${i}`, placeKey(`bulk/${i}`, volumes.urls, 2).join(','));
    })();
    db.close();
  });
  afterAll(() => stopServerAndVolumes(server, volumes));

  it('cancels a dry run over 30,000 keys part-way instead of after it finished', async () => {
    const started = JSON.parse((await http('POST', `${server.url}/_admin/rebalance?dryRun=true`)).text);
    const cancel = await http('DELETE', `${server.url}/_admin/jobs/${started.id}`);
    expect(cancel.status).toBe(200);
    const job = await pollUntil(async () => {
      const view = JSON.parse((await http('GET', `${server.url}/_admin/jobs/${started.id}`)).text);
      return ['cancelled', 'succeeded'].includes(view.state) ? view : undefined;
    }, { what: 'the job to end' });
    expect(job.state).toBe('cancelled');
    expect(job.counters.scanned).toBeLessThan(KEYS);
  });
});
