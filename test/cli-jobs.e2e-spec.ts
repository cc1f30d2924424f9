import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { placeKey } from '../src/hashing/rendezvous';
import { IndexRow, readIndexRows } from './support/index-rows';
import { runMkv } from './support/cli';
import { http, keyUrl } from './support/http';
import { TestServer } from './support/server';
import { TestVolume, TestVolumes, stopServerAndVolumes } from './support/volumes';



/** key -> bytes of every blob a volume holds on disk (dot-names are mkv's and nginx's own). */
function filesOn(volume: TestVolume): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (dir: string, prefix: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path, `${prefix}${entry.name}/`);
      else found.set(`${prefix}${entry.name}`, volume.read(`${prefix}${entry.name}`).toString());
    }
  };
  walk(volume.dataDir, '');
  return found;
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** The summary line on stdout; group 1 is the counters. */
const SUMMARY = (what: string, state: string) => new RegExp(`^${escape(what)} ${state} in \\d+\\.\\d s: (.*)$`, 'm');
const valueOf = (key: string, i: number) => `${key} `.repeat((i % 5) + 1);

/** Fills an index through the real server, then stops it so the CLI owns the file. */
async function populate(options: { volumes: string[]; replicas: number; dir: string }, keys: string[]): Promise<Map<string, string>> {
  const server = await TestServer.start(options);
  const values = new Map<string, string>();
  try {
    for (const [i, key] of keys.entries()) {
      values.set(key, valueOf(key, i));
      expect((await http('PUT', keyUrl(server.url, key), { body: valueOf(key, i) })).status).toBe(201);
    }
  } finally {
    await server.stop();
  }
  return values;
}

/** `mkv rebuild` and `mkv rebalance` as an operator runs them, against real nginx and the index file. */
describe('mkv rebuild and rebalance', () => {
  it.each(['0', '65', '1.5', 'two'])('rebalance --concurrency %s exits 2 naming the option', (value) => {
    const { status, stdout, stderr } = runMkv(['-d', '/nonexistent/index.db', '-v', '127.0.0.1:1', 'rebalance', '--concurrency', value]);
    expect(status).toBe(2);
    expect(stdout).toBe('');
    expect(stderr.trim()).toBe(`mkv: invalid --concurrency: '${value}' is not a whole number from 1 to 64`);
  });

  describe('rebalance after adding a volume', () => {
    const KEYS = [...Array.from({ length: 40 }, (_, i) => `photos/${i % 4}/img-${i}.jpg`), '日本/語/😀.txt', 'with space/100% done'];
    let volumes: TestVolumes;
    let db: string;
    let values: Map<string, string>;
    let server: TestServer | undefined;
    const cli = (...args: string[]) => runMkv(['-d', db, '-v', volumes.urls.join(','), '-r', '2', 'rebalance', ...args]);

    beforeAll(async () => {
      volumes = await TestVolumes.start(3);
      const dir = join(volumes.root, 'index');
      db = join(dir, 'index.db');
      values = await populate({ volumes: volumes.urls, replicas: 2, dir }, KEYS);
      await volumes.add();
    });
    afterAll(() => stopServerAndVolumes(server, volumes));

    /** What moving to the 4-volume placement takes, from the index as it stands. */
    function expectedPlan(rows: IndexRow[]) {
      const pairs = new Map<string, { keys: number; bytes: number }>();
      let keys = 0;
      let bytes = 0;
      for (const row of rows) {
        const targets = placeKey(row.key, volumes.urls, 2);
        if (targets.join(',') === row.volumes) continue;
        keys += 1;
        for (const to of targets.filter((v) => !row.volumes.split(',').includes(v))) {
          const pair = `${row.volumes.split(',')[0]} -> ${to}`;
          const sum = pairs.get(pair) ?? { keys: 0, bytes: 0 };
          pairs.set(pair, { keys: sum.keys + 1, bytes: sum.bytes + row.size });
          bytes += row.size;
        }
      }
      const lines = [...pairs].map(([pair, sum]) => `  ${pair}: ${sum.keys} keys, ${sum.bytes} bytes`);
      return { keys, bytes, lines };
    }

    it('--dry-run prints the plan per volume pair, exits 0 and changes nothing', () => {
      const rowsBefore = readIndexRows(db);
      const filesBefore = volumes.list.map(filesOn);
      const plan = expectedPlan(rowsBefore);
      expect(plan.keys).toBeGreaterThan(0);

      const { status, stdout, stderr } = cli('--dry-run');
      expect(status).toBe(0);
      const summary = SUMMARY('rebalance (dry run)', 'succeeded').exec(stdout);
      expect(summary?.[1]).toBe(`${KEYS.length} scanned, ${plan.keys} to move, ${KEYS.length - plan.keys} skipped, 0 failed, ${plan.bytes} bytes`);
      const pairLines = stdout.split('\n').filter((line) => line.startsWith('  '));
      expect(pairLines.sort()).toEqual(plan.lines.sort());
      for (const line of pairLines) expect(line).toContain(` -> ${volumes.list[3].url}: `);
      expect(stderr).toMatch(/^rebalance succeeded: planning \d+\/\d+ \(100%\), /m);

      expect(readIndexRows(db)).toEqual(rowsBefore);
      expect(volumes.list.map(filesOn)).toEqual(filesBefore);
      expect(filesOn(volumes.list[3]).size).toBe(0);
    });

    it('moves the keys to their new placement, exits 0, and reports progress on stderr only', () => {
      const plan = expectedPlan(readIndexRows(db));
      const { status, stdout, stderr } = cli('--concurrency', '3');
      expect(status).toBe(0);
      expect(SUMMARY('rebalance', 'succeeded').exec(stdout)?.[1]).toBe(
        `${KEYS.length} scanned, ${plan.keys} moved, ${KEYS.length - plan.keys} skipped, 0 failed, ${plan.bytes} bytes`,
      );
      // Not a terminal: whole lines, no carriage returns or escape codes, and none on stdout.
      expect(stderr).toMatch(new RegExp(`^rebalance succeeded: moving ${KEYS.length}/${KEYS.length} \\(100%\\), ${KEYS.length} scanned, `, 'm'));
      expect(stderr).not.toMatch(/[\r\x1b]/);
      expect(stdout).not.toMatch(/moving/);

      const rows = readIndexRows(db);
      expect(rows.map((r) => r.key).sort()).toEqual([...KEYS].sort());
      for (const row of rows) expect(row.volumes).toBe(placeKey(row.key, volumes.urls, 2).join(','));
      // Exactly the placement's replicas hold each key, byte for byte; the dropped copies are gone.
      for (const volume of volumes.list) {
        const expected = new Map(KEYS.filter((k) => placeKey(k, volumes.urls, 2).includes(volume.url)).map((k) => [k, values.get(k)!]));
        expect(filesOn(volume)).toEqual(expected);
      }
      expect(filesOn(volumes.list[3]).size).toBe(plan.keys);
    });

    it('a second run finds nothing to move', () => {
      const { status, stdout } = cli();
      expect(status).toBe(0);
      expect(SUMMARY('rebalance', 'succeeded').exec(stdout)?.[1]).toBe(`${KEYS.length} scanned, 0 moved, ${KEYS.length} skipped, 0 failed, 0 bytes`);
    });

    it('a server on the new volume list redirects to the moved blobs', async () => {
      server = await TestServer.start({ volumes: volumes.urls, replicas: 2, dir: join(volumes.root, 'index') });
      for (const key of KEYS) {
        const res = await http('GET', keyUrl(server.url, key));
        expect(res.status).toBe(302);
        expect((await http('GET', res.headers.location)).text).toBe(values.get(key));
      }
    });
  });

  describe('rebalance with a source volume stopped', () => {
    let volumes: TestVolumes;
    let db: string;
    let fromDown: string[];
    let fromUp: string[];
    let values: Map<string, string>;

    beforeAll(async () => {
      volumes = await TestVolumes.start(3);
      const [down, up, added] = volumes.urls;
      // One replica each, so a key on the stopped volume has nowhere else to be copied from.
      fromDown = [];
      fromUp = [];
      const staying: string[] = [];
      for (let i = 0; fromDown.length < 3 || fromUp.length < 3 || staying.length < 3; i++) {
        const key = `src/${i}`;
        const before = placeKey(key, [down, up], 1)[0];
        const after = placeKey(key, volumes.urls, 1)[0];
        if (after === added && before === down && fromDown.length < 3) fromDown.push(key);
        else if (after === added && before === up && fromUp.length < 3) fromUp.push(key);
        else if (after !== added && staying.length < 3) staying.push(key);
      }
      db = join(volumes.root, 'index', 'index.db');
      values = await populate({ volumes: [down, up], replicas: 1, dir: join(volumes.root, 'index') }, [...fromDown, ...fromUp, ...staying]);
      await volumes.list[0].stop();
    });
    afterAll(async () => {
      await volumes?.stop();
    });

    it('exits 1, names each key it could not copy on stderr, and moves the others', () => {
      const [down, up, added] = volumes.list;
      const before = new Map(readIndexRows(db).map((row) => [row.key, row]));
      const { status, stdout, stderr } = runMkv(['-d', db, '-v', volumes.urls.join(','), '-r', '1', 'rebalance']);
      expect(status).toBe(1);
      expect(SUMMARY('rebalance', 'failed').exec(stdout)?.[1]).toMatch(/^9 scanned, 3 moved, 3 skipped, 3 failed, \d+ bytes$/);

      const failures = stderr.split('\n').filter((line) => line.startsWith('failed: '));
      expect(failures.map((line) => line.split(': ')[1]).sort()).toEqual([...fromDown].sort());
      for (const line of failures) expect(line).toMatch(new RegExp(`^failed: (src/\\d+): GET ${escape(down.url)}/\\1: connect ECONNREFUSED`));

      const after = new Map(readIndexRows(db).map((row) => [row.key, row]));
      for (const key of fromDown) expect(after.get(key)).toEqual(before.get(key));
      for (const key of fromUp) {
        expect(after.get(key)!.volumes).toBe(added.url);
        expect(added.read(key).toString()).toBe(values.get(key));
        expect(up.has(key)).toBe(false);
      }
      for (const key of fromDown) expect(added.has(key)).toBe(false);
    });
  });

  describe('rebuild', () => {
    const KEYS = ['日本/語/😀.txt', 'with space/a b', 'percent/100%/a%2Bb', 'd1/d2/d3/d4/d5/d6/d7/d8/leaf', 'plain'];
    let volumes: TestVolumes;
    let db: string;
    const cli = () => runMkv(['-d', db, '-v', volumes.urls.join(','), '-r', '2', 'rebuild']);

    beforeAll(async () => {
      volumes = await TestVolumes.start(3);
      db = join(volumes.root, 'index', 'index.db');
      await populate({ volumes: volumes.urls, replicas: 2, dir: join(volumes.root, 'index') }, KEYS);
    });
    afterAll(async () => {
      await volumes?.stop();
    });

    it('from the volumes alone exits 0 and reproduces the keys', () => {
      const placement = (rows: IndexRow[]) => rows.map(({ key, volumes, size, state }) => ({ key, volumes, size, state }));
      const before = placement(readIndexRows(db));
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${db}${suffix}`, { force: true });

      const { status, stdout, stderr } = cli();
      expect(status).toBe(0);
      expect(SUMMARY('rebuild', 'succeeded').exec(stdout)?.[1]).toBe(`${KEYS.length * 2} scanned, ${KEYS.length} moved, 0 skipped, 0 failed, 0 bytes`);
      expect(stderr).toMatch(/^rebuild succeeded: swapping in the new index 1\/1 \(100%\), /m);
      expect(stdout).not.toMatch(/swapping/);
      expect(placement(readIndexRows(db))).toEqual(before);
      expect(statSync(db).size).toBeGreaterThan(0);
    });

    it('with a volume down exits 1 with the error on stderr and leaves the index as it was', async () => {
      const before = readIndexRows(db);
      const down = volumes.list[2];
      await down.stop();
      try {
        const { status, stdout, stderr } = cli();
        expect(status).toBe(1);
        expect(SUMMARY('rebuild', 'failed').exec(stdout)).not.toBeNull();
        expect(stderr).toMatch(new RegExp(`^error: GET ${escape(down.url)}/: connect ECONNREFUSED`, 'm'));
        expect(readIndexRows(db)).toEqual(before);
      } finally {
        await down.start();
      }
    });
  });
});
