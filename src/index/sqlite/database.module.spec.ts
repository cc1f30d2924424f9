import { Test } from '@nestjs/testing';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { ConfigModule } from '../../config/config.module';
import { loadConfig } from '../../config/load-config';
import { DatabaseModule } from './database.module';
import { IndexInUseError } from '../index-in-use.error';
import { IndexOwner } from './index-owner';
import { SqliteDatabase } from './sqlite-database';

/** The index file's owner, connection and their shutdown, on their own (no key index, no jobs). */
describe(DatabaseModule.name, () => {
  let dir: string;
  let db: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mkv-database-'));
    db = join(dir, 'sub', 'index.db');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('claims the file, migrates it and sets the pragmas; on close it destroys the connection first, then lets the next owner in', async () => {
    const config = loadConfig({ db, volumes: 'a:1,b:2', replicas: 2 });
    const moduleRef = await Test.createTestingModule({ imports: [ConfigModule.forRoot(config), DatabaseModule] }).compile();
    const dataSource = moduleRef.get(DataSource);
    const connection = moduleRef.get(SqliteDatabase).db;
    expect(connection.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(connection.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
    expect(connection.pragma('busy_timeout', { simple: true })).toBe(5000);
    expect(await dataSource.showMigrations()).toBe(false); // none left to run
    expect(() => IndexOwner.claim(db)).toThrow(IndexInUseError);

    const destroy = jest.spyOn(dataSource, 'destroy');
    const release = jest.spyOn(moduleRef.get(IndexOwner), 'release');
    await moduleRef.close();
    expect(destroy.mock.invocationCallOrder[0]).toBeLessThan(release.mock.invocationCallOrder[0]);
    expect(dataSource.isInitialized).toBe(false);
    expect(existsSync(`${db}.pid`)).toBe(false);
    IndexOwner.claim(db).release();
  });
});
