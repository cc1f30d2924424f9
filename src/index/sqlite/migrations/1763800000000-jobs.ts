import { MigrationInterface, QueryRunner } from 'typeorm';

export class Jobs1763800000000 implements MigrationInterface {
  name = 'Jobs1763800000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE "jobs" (
        "id" TEXT NOT NULL PRIMARY KEY,
        "kind" TEXT NOT NULL,
        "state" TEXT NOT NULL,
        "view" TEXT NOT NULL,
        "created_at" INTEGER NOT NULL
      )`);
    await queryRunner.query(`CREATE INDEX "jobs_by_created" ON "jobs" ("created_at")`);
    await queryRunner.query(`
      CREATE TABLE "job_plan" (
        "job_id" TEXT NOT NULL,
        "seq" INTEGER NOT NULL,
        "entry" TEXT NOT NULL,
        PRIMARY KEY ("job_id", "seq")
      ) WITHOUT ROWID`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE "job_plan"`);
    await queryRunner.query(`DROP TABLE "jobs"`);
  }
}
