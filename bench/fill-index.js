#!/usr/bin/env node
/**
 * Fills an mkv index with keys quickly, through the project's own code: the
 * index module (its migrations, its SQLite settings) and the repository's
 * finishWrite (its record encoding), with placement from the hashing module.
 * Not over HTTP: a million PUTs would take the better part of an hour.
 *
 *   npm run build && node bench/fill-index.js --db FILE --volumes URL,URL,URL
 *       [--replicas 2] [--prefix bench/k] [--count 1000000] [--value-bytes 1024]
 *       [--data-dirs DIR,DIR,DIR]
 *
 * Writes keys <prefix>0 .. <prefix><count-1>, each recorded as a finished
 * write of <value-bytes> bytes of 'x' (what the benchmark's wrk PUTs send).
 * With --data-dirs (each volume's nginx root, in --volumes order) it also
 * writes each key's blob into the directories of the volumes that hold it, so
 * GET, HEAD and DELETE find real files; without, it records the keys only.
 * The keys go in one transaction, so a million take seconds. The database
 * may be one a running server serves: SQLite's WAL and the index's busy
 * timeout let the two share it.
 */
const { NestFactory } = require('@nestjs/core');
const { DataSource } = require('typeorm');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { ConfigModule } = require('../dist/config/config.module');
const { HashingModule } = require('../dist/hashing/hashing.module');
const { IndexModule } = require('../dist/index/index.module');
const { KEY_INDEX, PLACEMENT, loadConfig } = require('../dist/index');

const KEYS_PER_BATCH = 10_000;

async function main() {
  const { values } = parseArgs({
    options: {
      db: { type: 'string' },
      volumes: { type: 'string' },
      replicas: { type: 'string', default: '2' },
      prefix: { type: 'string', default: 'bench/k' },
      count: { type: 'string', default: '1000000' },
      'value-bytes': { type: 'string', default: '1024' },
      'data-dirs': { type: 'string' },
    },
  });
  if (!values.db || !values.volumes) throw new Error('usage: fill-index.js --db FILE --volumes URL,URL,... (see the header comment)');
  const config = loadConfig({ db: values.db, volumes: values.volumes, replicas: values.replicas, logLevel: 'warn' });
  const count = Number(values.count);
  const value = Buffer.alloc(Number(values['value-bytes']), 'x');
  const dataDirs = values['data-dirs'] && new Map(values['data-dirs'].split(',').map((dir, i) => [config.volumes[i], dir]));

  const app = await NestFactory.createApplicationContext(
    { module: class FillIndex {}, imports: [ConfigModule.forRoot(config), IndexModule.forRoot(), HashingModule.forRoot()] },
    { logger: ['warn', 'error'] },
  );
  try {
    const index = app.get(KEY_INDEX);
    const placement = app.get(PLACEMENT);
    // One transaction for the whole fill (the repository's own per-call
    // transactions become savepoints in it): one commit, not one per key.
    const db = app.get(DataSource).driver.databaseConnection;
    const record = { size: value.length, md5: createHash('md5').update(value).digest('hex'), state: 'live' };
    const started = Date.now();
    db.exec('BEGIN');
    try {
      for (let first = 0; first < count; first += KEYS_PER_BATCH) {
        const writes = [];
        for (let i = first; i < Math.min(first + KEYS_PER_BATCH, count); i++) {
          const key = `${values.prefix}${i}`;
          const volumes = placement.replicasFor(key);
          if (dataDirs) for (const volume of volumes) writeBlob(dataDirs.get(volume), new URL(placement.blobUrl(key, volume)).pathname, value);
          const now = Date.now();
          writes.push(index.finishWrite('fill-index', { ...record, key, volumes, createdAt: now, updatedAt: now }));
        }
        // Each write ran synchronously; awaiting surfaces a failure, and a
        // batch at a time keeps the promises young for the garbage collector.
        await Promise.all(writes);
      }
      db.exec('COMMIT');
    } catch (error) {
      db.exec('ROLLBACK');
      throw error;
    }
    console.log(`filled ${count} keys (${values.prefix}0..${count - 1}) into ${values.db} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    await app.close();
  }
}

const madeDirs = new Set();

function writeBlob(dataDir, urlPath, value) {
  const file = path.join(dataDir, decodeURIComponent(urlPath));
  const dir = path.dirname(file);
  if (!madeDirs.has(dir)) fs.mkdirSync(dir, { recursive: true }), madeDirs.add(dir);
  fs.writeFileSync(file, value);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
