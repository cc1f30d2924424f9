import Database from 'better-sqlite3';
import { DataSource } from 'typeorm';
import { migrate, normalizeSql, OLD_DELETE_TRIGGER, triggersOf } from '../../../../test/support/migrations';
import { USAGE_TRIGGERS } from '../usage-counters';
import { IndexUsage1764000000000 } from './1764000000000-index-usage';
import { MIGRATIONS } from './migrations';

describe('index migrations', () => {
  it('leave a fresh index with the usage triggers the live code creates (a change to usage-counters.ts without a migration fails here)', async () => {
    const dataSource = new DataSource({ type: 'better-sqlite3', database: ':memory:', migrations: MIGRATIONS, migrationsRun: true });
    await dataSource.initialize();
    try {
      const db = (dataSource.driver as unknown as { databaseConnection: Database.Database }).databaseConnection;
      expect(triggersOf(db)).toEqual(USAGE_TRIGGERS.map(normalizeSql).sort());
    } finally {
      await dataSource.destroy();
    }
  });

  it(`run ${IndexUsage1764000000000.name} as it was written: the UPDATE ... FROM delete trigger an index of that version holds`, async () => {
    const db = new Database(':memory:');
    await migrate(db, MIGRATIONS.slice(0, MIGRATIONS.indexOf(IndexUsage1764000000000) + 1));
    expect(triggersOf(db)).toContain(normalizeSql(OLD_DELETE_TRIGGER));
    db.close();
  });
});
