import { MigrationInterface, QueryRunner } from 'typeorm';
import { DROP_USAGE_TRIGGERS, RECOUNT_USAGE, USAGE_TABLE, USAGE_TRIGGERS } from '../usage-counters';

export class IndexUsage1764000000000 implements MigrationInterface {
  name = 'IndexUsage1764000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(USAGE_TABLE);
    for (const statement of [...USAGE_TRIGGERS, ...RECOUNT_USAGE]) await queryRunner.query(statement);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    for (const statement of DROP_USAGE_TRIGGERS) await queryRunner.query(statement);
    await queryRunner.query(`DROP TABLE "index_usage"`);
  }
}
