import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { MkvConfig } from '../config/mkv-config';
import { KEY_INDEX } from './key-index';
import { KeyEntity } from './key.entity';
import { JobEntity } from '../jobs/job.entity';
import { JobPlanEntity } from '../jobs/job-plan.entity';
import { InitialSchema1763700000000 } from './migrations/1763700000000-initial-schema';
import { Jobs1763800000000 } from './migrations/1763800000000-jobs';
import { PendingDeletes1763900000000 } from './migrations/1763900000000-pending-deletes';
import { IndexUsage1764000000000 } from './migrations/1764000000000-index-usage';
import { UsageUpsertTriggers1764100000000 } from './migrations/1764100000000-usage-upsert-triggers';
import { SqliteKeyIndex } from './sqlite-key-index.repository';
import { WriteIntentEntity } from './write-intent.entity';

@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [MkvConfig],
      useFactory: (config: MkvConfig) => {
        if (config.db !== ':memory:') mkdirSync(dirname(config.db), { recursive: true });
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
            // A CLI job or a second reader on the same file waits instead of failing.
            db.pragma('busy_timeout = 5000');
          },
        };
      },
    }),
  ],
  providers: [{ provide: KEY_INDEX, useClass: SqliteKeyIndex }],
  exports: [KEY_INDEX],
})
export class IndexModule {}
