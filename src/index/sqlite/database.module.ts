import { Module, OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource, TypeOrmModule } from '@nestjs/typeorm';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DataSource } from 'typeorm';
import { MkvConfig } from '../../config/mkv-config';
import { IndexOwner } from './index-owner';
import { JobEntity } from './job.entity';
import { JobPlanEntity } from './job-plan.entity';
import { KeyEntity } from './key.entity';
import { MIGRATIONS } from './migrations/migrations';
import { SqliteDatabase } from './sqlite-database';
import { WriteIntentEntity } from './write-intent.entity';

/** The claim on the index file, taken before TypeORM opens it (see DatabaseModule for its release). */
@Module({
  providers: [
    {
      provide: IndexOwner,
      inject: [MkvConfig],
      useFactory: (config: MkvConfig) => {
        if (config.db !== ':memory:') mkdirSync(dirname(config.db), { recursive: true });
        return IndexOwner.claim(config.db);
      },
    },
  ],
  exports: [IndexOwner],
})
class IndexOwnerModule {}

/**
 * The SQLite index file: this process's claim on it (IndexOwner), TypeORM's
 * DataSource on it (WAL, migrated at start) and the raw connection under it
 * (SqliteDatabase). The index's providers are SqliteIndexModule's.
 */
@Module({
  imports: [
    IndexOwnerModule,
    TypeOrmModule.forRootAsync({
      imports: [IndexOwnerModule],
      // The owner is injected only to be claimed first: no migration or recovery runs on an index another process owns.
      inject: [MkvConfig, IndexOwner],
      useFactory: (config: MkvConfig) => {
        return {
          type: 'better-sqlite3' as const,
          database: config.db,
          entities: [KeyEntity, WriteIntentEntity, JobEntity, JobPlanEntity],
          migrations: MIGRATIONS,
          migrationsRun: true,
          synchronize: false,
          enableWAL: true,
          prepareDatabase: (db: { pragma(source: string): unknown }) => {
            // No fsync per commit: a power cut can lose the last commits, never corrupts.
            db.pragma('synchronous = NORMAL');
            // A reader beside the owner (an operator's sqlite3 shell) waits instead of failing.
            db.pragma('busy_timeout = 5000');
          },
        };
      },
    }),
  ],
  providers: [SqliteDatabase],
  exports: [SqliteDatabase, IndexOwnerModule],
})
export class DatabaseModule implements OnApplicationShutdown {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly owner: IndexOwner,
  ) {}

  /**
   * The claim outlives the connection: the next process must not open the
   * index while this one may still commit. TypeORM would close it only after
   * this hook (its module is global, so Nest shuts it down last), and then
   * finds it closed.
   */
  async onApplicationShutdown(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
    this.owner.release();
  }
}
