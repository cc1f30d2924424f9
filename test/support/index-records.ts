import { Test, TestingModule } from '@nestjs/testing';
import { ConfigModule } from '../../src/config/config.module';
import { loadConfig } from '../../src/config/load-config';
import type { IndexUsage, KeyIndex } from '../../src/index/key-index';
import type { KeyRecord, WriteIntent } from '../../src/index/key-record';
import { SqliteIndexModule } from '../../src/index/sqlite/sqlite-index.module';

/** The builders the index specs share: the KeyIndex contract, the SQLite index and its rebuild staging. */

export const V1 = 'http://a:1';
export const V2 = 'http://b:2';
export const V3 = 'http://c:3';

/** The stock SQLite index with its config, on `db` (an in-memory database unless a file is given). */
export function compileSqliteIndex(db = ':memory:'): Promise<TestingModule> {
  const config = loadConfig({ db, volumes: 'a:1,b:2,c:3', replicas: 2 });
  return Test.createTestingModule({ imports: [ConfigModule.forRoot(config), SqliteIndexModule] }).compile();
}

export function record(key: string, overrides: Partial<KeyRecord> = {}): KeyRecord {
  return { key, volumes: [V1, V2], size: 5, md5: '5d41402abc4b2a76b9719d911017c592', state: 'live', createdAt: 1000, updatedAt: 1000, ...overrides };
}

export function intent(key: string, id = `intent-${key}`, createdAt = 1000): WriteIntent {
  return { id, key, tempPath: `/.mkv-tmp/${id}`, volumes: [V1, V2], createdAt };
}

/** Stores a finished record, as a completed PUT leaves it. */
export async function storeFinished(index: KeyIndex, rec: KeyRecord): Promise<void> {
  const id = `seed-${rec.key}`;
  expect((await index.beginWrite(rec, intent(rec.key, id))).conflict).toBeUndefined();
  await index.finishWrite(id, rec);
}

/** Usage with its volumes in a fixed order, so two answers compare with toEqual. */
export function byVolume({ keys, bytes, volumes }: IndexUsage): IndexUsage {
  return { keys, bytes, volumes: [...volumes].sort((a, b) => a.volume.localeCompare(b.volume)) };
}

/** Keys and bytes per volume counted the slow way, from every record. */
export async function countedUsage(index: KeyIndex): Promise<IndexUsage> {
  const records = await index.scan(undefined, 1000);
  const volumes = new Map<string, { volume: string; keys: number; bytes: number }>();
  for (const { volumes: held, size } of records) {
    for (const volume of held) {
      const entry = volumes.get(volume) ?? { volume, keys: 0, bytes: 0 };
      entry.keys += 1;
      entry.bytes += size;
      volumes.set(volume, entry);
    }
  }
  return byVolume({ keys: records.length, bytes: records.reduce((sum, r) => sum + r.size, 0), volumes: [...volumes.values()] });
}
