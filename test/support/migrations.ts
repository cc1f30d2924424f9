import Database from 'better-sqlite3';
import type { QueryRunner } from 'typeorm';
import type { MIGRATIONS } from '../../src/index/sqlite/migrations/migrations';

/** SQL compared as SQLite reads it: whitespace is not part of a trigger's meaning. */
export function normalizeSql(sql: string): string {
  return sql.replace(/\s+/g, ' ').trim();
}

/** The triggers' SQL, as the database holds it, by name. */
export function triggersOf(db: Database.Database): string[] {
  const rows = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name").all() as { sql: string }[];
  return rows.map((row) => normalizeSql(row.sql));
}

/** Runs migrations on a bare better-sqlite3 connection, as TypeORM would (they only query). */
export async function migrate(db: Database.Database, migrations: (typeof MIGRATIONS)[number][]): Promise<void> {
  const runner = { query: async (sql: string) => db.exec(sql) } as unknown as QueryRunner;
  for (const Migration of migrations) await new Migration().up(runner);
}

/** The delete trigger an index made before UsageUpsertTriggers1764100000000 holds. */
export const OLD_DELETE_TRIGGER = `CREATE TRIGGER "usage_on_delete" AFTER DELETE ON "keys" BEGIN
  UPDATE index_usage SET keys = keys - 1, bytes = bytes - OLD.size
    FROM json_each('[""' || CASE WHEN OLD.volumes = '' THEN '' ELSE ',"' || replace(OLD.volumes, ',', '","') || '"' END || ']') AS v
    WHERE index_usage.volume = v.value; END`;
