import Database from 'better-sqlite3';
import type { QueryRunner } from 'typeorm';
import { USAGE_TABLE, USAGE_TRIGGERS } from '../usage-counters';
import { UsageUpsertTriggers1764100000000 } from './1764100000000-usage-upsert-triggers';

/** The delete trigger an index made before this migration holds. */
const OLD_DELETE_TRIGGER = `CREATE TRIGGER "usage_on_delete" AFTER DELETE ON "keys" BEGIN
  UPDATE index_usage SET keys = keys - 1, bytes = bytes - OLD.size
    FROM json_each('[""' || CASE WHEN OLD.volumes = '' THEN '' ELSE ',"' || replace(OLD.volumes, ',', '","') || '"' END || ']') AS v
    WHERE index_usage.volume = v.value; END`;

describe(UsageUpsertTriggers1764100000000.name, () => {
  it('gives an existing index the current triggers, keeping its counts, which then follow writes and deletes', async () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE keys (key TEXT PRIMARY KEY, volumes TEXT NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID');
    db.exec(USAGE_TABLE);
    db.exec(USAGE_TRIGGERS[0]); // the insert trigger has not changed
    db.exec(OLD_DELETE_TRIGGER);
    const put = db.prepare('INSERT INTO keys (key, volumes, size) VALUES (?, ?, ?)');
    put.run('a', 'http://v1,http://v2', 5);
    put.run('b', 'http://v2,http://v3', 7);
    const usage = () => db.prepare('SELECT volume, keys, bytes FROM index_usage WHERE keys <> 0 ORDER BY volume').all();
    const before = usage();

    await new UsageUpsertTriggers1764100000000().up({ query: async (sql: string) => db.exec(sql) } as unknown as QueryRunner);

    const triggers = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name").all() as { sql: string }[];
    expect(triggers.map((t) => t.sql).sort()).toEqual([...USAGE_TRIGGERS].sort());
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
