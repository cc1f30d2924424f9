import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Keys and bytes per volume in `index_usage`, kept by triggers on `keys` (see
 * usage-counters.ts for the live SQL). The SQL is as this migration first
 * ran it, frozen: a migration never follows later changes to the live code.
 * Its delete trigger, an UPDATE ... FROM, is replaced by the next migration.
 */
export class IndexUsage1764000000000 implements MigrationInterface {
  name = 'IndexUsage1764000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE "index_usage" (
        "volume" TEXT NOT NULL PRIMARY KEY,
        "keys" INTEGER NOT NULL,
        "bytes" INTEGER NOT NULL
      ) WITHOUT ROWID`);
    await queryRunner.query(`
      CREATE TRIGGER "usage_on_insert" AFTER INSERT ON "keys" BEGIN
        INSERT INTO index_usage (volume, keys, bytes) SELECT value, 1, NEW.size
          FROM json_each('[""' || CASE WHEN NEW.volumes = '' THEN '' ELSE ',"' || replace(NEW.volumes, ',', '","') || '"' END || ']') WHERE true
          ON CONFLICT (volume) DO UPDATE SET keys = keys + 1, bytes = bytes + excluded.bytes; END`);
    await queryRunner.query(`
      CREATE TRIGGER "usage_on_delete" AFTER DELETE ON "keys" BEGIN
        UPDATE index_usage SET keys = keys - 1, bytes = bytes - OLD.size
          FROM json_each('[""' || CASE WHEN OLD.volumes = '' THEN '' ELSE ',"' || replace(OLD.volumes, ',', '","') || '"' END || ']') AS v
          WHERE index_usage.volume = v.value; END`);
    await queryRunner.query(`
      CREATE TRIGGER "usage_on_update" AFTER UPDATE OF volumes, size ON "keys"
        WHEN OLD.volumes IS NOT NEW.volumes OR OLD.size IS NOT NEW.size
        BEGIN
        INSERT INTO index_usage (volume, keys, bytes) SELECT value, 1, NEW.size
          FROM json_each('[""' || CASE WHEN NEW.volumes = '' THEN '' ELSE ',"' || replace(NEW.volumes, ',', '","') || '"' END || ']') WHERE true
          ON CONFLICT (volume) DO UPDATE SET keys = keys + 1, bytes = bytes + excluded.bytes;
        UPDATE index_usage SET keys = keys - 1, bytes = bytes - OLD.size
          FROM json_each('[""' || CASE WHEN OLD.volumes = '' THEN '' ELSE ',"' || replace(OLD.volumes, ',', '","') || '"' END || ']') AS v
          WHERE index_usage.volume = v.value; END`);
    // Counted once, from every key.
    await queryRunner.query('DELETE FROM index_usage');
    await queryRunner.query(`
      INSERT INTO index_usage (volume, keys, bytes)
        SELECT v.value, COUNT(*), SUM(k.size)
        FROM keys AS k, json_each('[""' || CASE WHEN k.volumes = '' THEN '' ELSE ',"' || replace(k.volumes, ',', '","') || '"' END || ']') AS v
        GROUP BY v.value`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const event of ['insert', 'delete', 'update']) await queryRunner.query(`DROP TRIGGER IF EXISTS "usage_on_${event}"`);
    await queryRunner.query(`DROP TABLE "index_usage"`);
  }
}
