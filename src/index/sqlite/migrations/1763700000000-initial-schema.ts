import { MigrationInterface, QueryRunner } from 'typeorm';

export class InitialSchema1763700000000 implements MigrationInterface {
  name = 'InitialSchema1763700000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    // WITHOUT ROWID: the key is the B-tree, so a lookup or a prefix range is
    // one search and the rows sort by the key's UTF-8 bytes (BINARY collation).
    await queryRunner.query(`
      CREATE TABLE "keys" (
        "key" TEXT NOT NULL PRIMARY KEY,
        "volumes" TEXT NOT NULL,
        "size" INTEGER NOT NULL,
        "md5" TEXT NOT NULL,
        "state" TEXT NOT NULL CHECK ("state" IN ('live', 'unlinked')),
        "created_at" INTEGER NOT NULL,
        "updated_at" INTEGER NOT NULL
      ) WITHOUT ROWID`);
    await queryRunner.query(`
      CREATE TABLE "write_intents" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "key" TEXT NOT NULL,
        "temp_path" TEXT NOT NULL,
        "volumes" TEXT NOT NULL,
        "created_at" INTEGER NOT NULL
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "write_intents"`);
    await queryRunner.query(`DROP TABLE "keys"`);
  }
}
