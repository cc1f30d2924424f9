import { Module } from '@nestjs/common';
import { JOB_STORE } from '../../admin/jobs/job-store';
import { KEY_INDEX } from '../key-index';
import { REBUILD_STAGING } from '../rebuild-staging';
import { DatabaseModule } from './database.module';
import { GroupCommit } from './group-commit';
import { SqliteJobStore } from './sqlite-job.store';
import { SqliteKeyIndex } from './sqlite-key-index.repository';
import { SqliteRebuildStaging } from './sqlite-rebuild-staging';

/**
 * The stock index: one SQLite file (WAL, see DatabaseModule) holding the
 * keys, the rebuild's staging and the jobs, owned by this process alone.
 */
@Module({
  imports: [DatabaseModule],
  providers: [
    GroupCommit,
    SqliteKeyIndex,
    SqliteRebuildStaging,
    SqliteJobStore,
    { provide: KEY_INDEX, useExisting: SqliteKeyIndex },
    { provide: REBUILD_STAGING, useExisting: SqliteRebuildStaging },
    { provide: JOB_STORE, useExisting: SqliteJobStore },
  ],
  // The classes too, so that a team's index module can wrap one and re-export the others (useExisting).
  exports: [KEY_INDEX, REBUILD_STAGING, JOB_STORE, SqliteKeyIndex, SqliteRebuildStaging, SqliteJobStore, DatabaseModule],
})
export class SqliteIndexModule {}
