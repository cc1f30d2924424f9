import Database from 'better-sqlite3';
import { USAGE_TRIGGERS } from '../usage-counters';
import { IndexUsage1764000000000 } from './1764000000000-index-usage';
import { UsageUpsertTriggers1764100000000 } from './1764100000000-usage-upsert-triggers';
import { MIGRATIONS } from './migrations';
import { migrate, normalizeSql, OLD_DELETE_TRIGGER, triggersOf } from '../../../../test/support/migrations';

describe(UsageUpsertTriggers1764100000000.name, () => {
  it('gives an existing index the current triggers, keeping its counts, which then follow writes and deletes', async () => {
    // An index as the migrations up to IndexUsage1764000000000 left it, with keys in it.
    const db = new Database(':memory:');
    await migrate(db, MIGRATIONS.slice(0, MIGRATIONS.indexOf(IndexUsage1764000000000) + 1));
    expect(triggersOf(db)).toContain(normalizeSql(OLD_DELETE_TRIGGER));
    const put = db.prepare(`INSERT INTO keys (key, volumes, size, md5, state, created_at, updated_at) VALUES (?, ?, ?, '', 'live', 1, 1)`);
    put.run('a', 'http://v1,http://v2', 5);
    put.run('b', 'http://v2,http://v3', 7);
    const usage = () => db.prepare('SELECT volume, keys, bytes FROM index_usage WHERE keys <> 0 ORDER BY volume').all();
    const before = usage();

    await migrate(db, [UsageUpsertTriggers1764100000000]);

    expect(triggersOf(db)).toEqual(USAGE_TRIGGERS.map(normalizeSql).sort());
    expect(usage()).toEqual(before);
    db.prepare('DELETE FROM keys WHERE key = ?').run('a');
    put.run('c', 'http://v1', 1);
    db.prepare('UPDATE keys SET volumes = ?, size = ? WHERE key = ?').run('http://v3', 70, 'b');
    expect(usage()).toEqual([
      { volume: '', keys: 2, bytes: 71 },
      { volume: 'http://v1', keys: 1, bytes: 1 },
      { volume: 'http://v3', keys: 1, bytes: 70 },
    ]);
    db.close();
  });
});
