import { Injectable } from '@nestjs/common';
import type { FoundBlob, KeyRecord } from '../key-record';
import type { RebuildStaging } from '../rebuild-staging';
import { fromRow, KeyRow, splitVolumes } from './key-row';
import { SqliteDatabase } from './sqlite-database';
import { RECOUNT_USAGE, USAGE_TRIGGERS } from './usage-counters';

/**
 * The rebuild's staging in the index file: the table `keys_rebuild` filled
 * from the volumes while `keys` keeps serving, the keys the serving index
 * changes meanwhile (`rebuild_changed`, noted by the `rebuild_on_*`
 * triggers) and the copies set aside (`rebuild_strays`); swapped in at the
 * end in one transaction. A rebuild the process did not finish leaves these
 * behind, and the next start drops them (abandonRebuild).
 */
@Injectable()
export class SqliteRebuildStaging implements RebuildStaging {
  constructor(private readonly database: SqliteDatabase) {}

  private get db() {
    return this.database.db;
  }

  async beginRebuild(): Promise<void> {
    this.database.guard(() =>
      this.database.writeTransaction(() => {
        this.dropRebuild();
        // The staging table is the serving table's own DDL under another name,
        // so the two can never drift apart.
        const { sql } = this.db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'keys'").get() as { sql: string };
        this.db.exec(sql.replace(/^CREATE TABLE "keys"/, 'CREATE TABLE "keys_rebuild"'));
        // Every key the serving index changes from now on (a write, unlink or
        // delete) is noted, so the swap takes those rows from the serving index
        // rather than from a walk that may have passed them by.
        this.db.exec(`CREATE TABLE "rebuild_changed" ("key" TEXT NOT NULL PRIMARY KEY) WITHOUT ROWID`);
        for (const event of ['INSERT', 'UPDATE', 'DELETE']) {
          const row = event === 'DELETE' ? 'OLD' : 'NEW';
          // Not INSERT OR IGNORE: a trigger takes the conflict policy of the statement that fired it.
          this.db.exec(`CREATE TRIGGER "rebuild_on_${event.toLowerCase()}" AFTER ${event} ON "keys"
                        BEGIN INSERT INTO "rebuild_changed" ("key") SELECT ${row}."key"
                          WHERE NOT EXISTS (SELECT 1 FROM "rebuild_changed" WHERE "key" = ${row}."key"); END`);
        }
        // So is every key whose write intent is dropped: a new key's direct
        // write that failed leaves no row to note, and the walk may have
        // listed its blob in the moment before it was deleted.
        this.db.exec(`CREATE TRIGGER "rebuild_on_intent_done" AFTER DELETE ON "write_intents"
                      BEGIN INSERT INTO "rebuild_changed" ("key") SELECT OLD."key"
                        WHERE NOT EXISTS (SELECT 1 FROM "rebuild_changed" WHERE "key" = OLD."key"); END`);
        // Copies found where the serving index does not list their key (see stageFound).
        this.db.exec(`CREATE TABLE "rebuild_strays" ("key" TEXT NOT NULL, "volume" TEXT NOT NULL, "size" INTEGER NOT NULL,
                        "mtime" INTEGER NOT NULL, "adopted" INTEGER NOT NULL DEFAULT 0, PRIMARY KEY ("key", "volume")) WITHOUT ROWID`);
      }),
    );
  }

  /**
   * A copy of a key the serving index knows, on a volume it does not list
   * for that key, is not staged on its size alone (a stray: a failed delete,
   * another cluster's file, other bytes of the same length): it is set aside,
   * and adopted only if none of the known replicas is found (adoptStrays).
   */
  async stageFound(blobs: FoundBlob[]): Promise<FoundBlob[]> {
    return this.database.guard(() => {
      const stage = this.db.prepare(STAGE_FOUND);
      const setAside = this.db.prepare('INSERT OR REPLACE INTO rebuild_strays (key, volume, size, mtime) VALUES (@key, @volume, @size, @mtime)');
      const strays: FoundBlob[] = [];
      this.database.writeTransaction(() => {
        for (const blob of blobs) {
          const known = this.database.keys.get.get(blob.key);
          if (known && !splitVolumes(known.volumes).includes(blob.volume)) {
            setAside.run(blob);
            strays.push(blob);
          } else {
            stage.run(blob);
          }
        }
      });
      return strays;
    });
  }

  async adoptStrays(): Promise<{ key: string; volumes: string[] }[]> {
    return this.database.guard(() =>
      this.database.writeTransaction(() => {
        this.db.prepare('UPDATE rebuild_strays SET adopted = 1 WHERE key NOT IN (SELECT key FROM keys_rebuild)').run();
        const stage = this.db.prepare(STAGE_FOUND);
        for (const blob of this.db.prepare('SELECT key, volume, size, mtime FROM rebuild_strays WHERE adopted = 1').all() as FoundBlob[]) {
          stage.run(blob);
        }
        const adopted = this.db
          .prepare('SELECT key, volumes FROM keys_rebuild WHERE key IN (SELECT key FROM rebuild_strays WHERE adopted = 1) ORDER BY key')
          .all() as { key: string; volumes: string }[];
        return adopted.map(({ key, volumes }) => ({ key, volumes: splitVolumes(volumes) }));
      }),
    );
  }

  async scanStaged(after: string | undefined, limit: number): Promise<KeyRecord[]> {
    return this.database.guard(() =>
      (this.db.prepare('SELECT * FROM keys_rebuild WHERE key > ? ORDER BY key LIMIT ?').all(after ?? '', limit) as KeyRow[]).map(fromRow),
    );
  }

  async setStagedVolumes(updates: { key: string; volumes: string[] }[]): Promise<void> {
    this.database.guard(() => {
      const update = this.db.prepare('UPDATE keys_rebuild SET volumes = ? WHERE key = ?');
      this.database.writeTransaction(() => {
        for (const { key, volumes } of updates) update.run(volumes.join(','), key);
      });
    });
  }

  async getStaged(keys: string[]): Promise<KeyRecord[]> {
    if (keys.length === 0) return [];
    return this.database.guard(() =>
      (this.db.prepare(`SELECT * FROM keys_rebuild WHERE key IN (SELECT value FROM json_each(?))`).all(JSON.stringify(keys)) as KeyRow[]).map(fromRow),
    );
  }

  async dropStaged(keys: string[]): Promise<void> {
    if (keys.length === 0) return;
    this.database.guard(() => this.db.prepare('DELETE FROM keys_rebuild WHERE key IN (SELECT value FROM json_each(?))').run(JSON.stringify(keys)));
  }

  async swapRebuild(): Promise<number> {
    return this.database.guard(() =>
      this.database.writeTransaction(() => {
        // Keys changed since the rebuild began, or with a write still renaming
        // its uploads or a delete still removing its blobs: the serving index
        // knows better than the walk.
        const serving = 'SELECT key FROM rebuild_changed UNION SELECT key FROM write_intents UNION SELECT key FROM pending_deletes';
        this.db.prepare(`DELETE FROM keys_rebuild WHERE key IN (${serving})`).run();
        this.db.prepare(`INSERT INTO keys_rebuild SELECT * FROM keys WHERE key IN (${serving})`).run();
        this.db
          .prepare(
            `UPDATE keys_rebuild SET state = old.state, created_at = old.created_at,
               md5 = CASE WHEN old.size = keys_rebuild.size AND keys_rebuild.key NOT IN (SELECT key FROM rebuild_strays WHERE adopted = 1)
                          THEN old.md5 ELSE keys_rebuild.md5 END
             FROM keys AS old WHERE old.key = keys_rebuild.key`,
          )
          .run();
        this.dropRebuildTracking();
        this.db.exec('DROP TABLE keys; ALTER TABLE keys_rebuild RENAME TO keys');
        // The usage triggers went with the old table.
        for (const statement of [...USAGE_TRIGGERS, ...RECOUNT_USAGE]) this.db.exec(statement);
        return this.database.keys.count.get()!.n;
      }),
    );
  }

  async abandonRebuild(): Promise<void> {
    this.database.guard(() => this.database.writeTransaction(() => this.dropRebuild()));
  }

  private dropRebuild(): void {
    this.dropRebuildTracking();
    this.db.exec('DROP TABLE IF EXISTS keys_rebuild');
  }

  private dropRebuildTracking(): void {
    for (const event of ['insert', 'update', 'delete', 'intent_done']) this.db.exec(`DROP TRIGGER IF EXISTS rebuild_on_${event}`);
    this.db.exec('DROP TABLE IF EXISTS rebuild_changed');
    this.db.exec('DROP TABLE IF EXISTS rebuild_strays');
  }
}

/** Merges a found copy into its key's staged row: a copy of the same size adds its volume, one of another size keeps the newer. */
const STAGE_FOUND = `
  INSERT INTO keys_rebuild (key, volumes, size, md5, state, created_at, updated_at)
  VALUES (@key, @volume, @size, '', 'live', @mtime, @mtime)
  ON CONFLICT (key) DO UPDATE SET
    volumes = CASE WHEN excluded.size = size THEN volumes || ',' || excluded.volumes
                   WHEN excluded.updated_at > updated_at THEN excluded.volumes ELSE volumes END,
    size = CASE WHEN excluded.size <> size AND excluded.updated_at > updated_at THEN excluded.size ELSE size END,
    created_at = min(created_at, excluded.created_at),
    updated_at = max(updated_at, excluded.updated_at)`; // in an UPDATE, every expression sees the row as it was before it
