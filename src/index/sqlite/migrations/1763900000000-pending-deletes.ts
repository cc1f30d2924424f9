import { MigrationInterface, QueryRunner } from 'typeorm';

export class PendingDeletes1763900000000 implements MigrationInterface {
  name = 'PendingDeletes1763900000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE "pending_deletes" (
        "key" TEXT NOT NULL PRIMARY KEY,
        "volumes" TEXT NOT NULL,
        "created_at" INTEGER NOT NULL
      ) WITHOUT ROWID`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "pending_deletes"`);
  }
}
