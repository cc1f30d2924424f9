import { MigrationInterface, QueryRunner } from 'typeorm';
import { DROP_USAGE_TRIGGERS, USAGE_TRIGGERS } from '../usage-counters';

/**
 * Replaces the usage triggers of an index made before this version: they took
 * a key off its volumes' counters with an UPDATE ... FROM that cost 21 to 30 µs
 * per delete (see usage-counters.ts). The counts themselves stay as they are.
 */
export class UsageUpsertTriggers1764100000000 implements MigrationInterface {
  name = 'UsageUpsertTriggers1764100000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    for (const statement of [...DROP_USAGE_TRIGGERS, ...USAGE_TRIGGERS]) await queryRunner.query(statement);
  }

  async down(): Promise<void> {
    // The older triggers counted the same; the ones in place stay.
  }
}
