import { Module, OnApplicationShutdown } from '@nestjs/common';
import { InjectDataSource, TypeOrmModule } from '@nestjs/typeorm';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DataSource } from 'typeorm';
import { MkvConfig } from '../../config/mkv-config';
import { IndexOwner } from './index-owner';
import { JOB_STORE } from '../../admin/jobs/job-store';
import { KEY_INDEX } from '../key-index';
import { REBUILD_STAGING } from '../rebuild-staging';
import { KeyEntity } from './key.entity';
import { JobEntity } from './job.entity';
import { JobPlanEntity } from './job-plan.entity';
import { InitialSchema1763700000000 } from './migrations/1763700000000-initial-schema';
import { Jobs1763800000000 } from './migrations/1763800000000-jobs';
import { PendingDeletes1763900000000 } from './migrations/1763900000000-pending-deletes';
import { IndexUsage1764000000000 } from './migrations/1764000000000-index-usage';
import { UsageUpsertTriggers1764100000000 } from './migrations/1764100000000-usage-upsert-triggers';
import { SqliteJobStore } from './sqlite-job.store';
import { GroupCommit } from './group-commit';
import { SqliteDatabase } from './sqlite-database';
import { SqliteKeyIndex } from './sqlite-key-index.repository';
import { SqliteRebuildStaging } from './sqlite-rebuild-staging';
import { WriteIntentEntity } from './write-intent.entity';

/** The claim on the index file, taken before TypeORM opens it (see IndexModule for its release). */
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
 * The stock index: one SQLite file (WAL) holding the keys, the rebuild's
 * staging and the jobs, owned by this process alone (IndexOwner).
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
          migrations: [InitialSchema1763700000000, Jobs1763800000000, PendingDeletes1763900000000, IndexUsage1764000000000, UsageUpsertTriggers1764100000000],
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
  providers: [
    SqliteDatabase,
    GroupCommit,
    SqliteKeyIndex,
    SqliteRebuildStaging,
    SqliteJobStore,
    { provide: KEY_INDEX, useExisting: SqliteKeyIndex },
    { provide: REBUILD_STAGING, useExisting: SqliteRebuildStaging },
    { provide: JOB_STORE, useExisting: SqliteJobStore },
  ],
  exports: [KEY_INDEX, REBUILD_STAGING, JOB_STORE, SqliteKeyIndex, SqliteRebuildStaging, IndexOwnerModule],
})
export class SqliteIndexModule implements OnApplicationShutdown {
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
