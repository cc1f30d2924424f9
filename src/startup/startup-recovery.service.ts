import { Inject, Injectable, OnApplicationBootstrap, Optional } from '@nestjs/common';
import { JobsService } from '../admin/jobs/jobs.service';
import { REBUILD_STAGING, RebuildStaging } from '../index/rebuild-staging';
import { DeleteRetrier } from '../keys/delete-retrier.service';
import { KeyWriter } from '../keys/key-writer.service';

/**
 * The index is this process's alone, so whatever it holds half done is a
 * dead process's, and the server finishes or clears it before it listens: a
 * rebuild's staging (its triggers would otherwise note every write until
 * the next rebuild), interrupted writes (the index already names their new
 * values) and jobs. Undone blob deletes are retried in the background (and
 * again whenever a volume comes back up, and every minute): they may wait on
 * a volume that is still down, and every one takes its key's lock.
 */
@Injectable()
export class StartupRecovery implements OnApplicationBootstrap {
  constructor(
    private readonly writer: KeyWriter,
    private readonly deletes: DeleteRetrier,
    private readonly jobs: JobsService,
    @Optional() @Inject(REBUILD_STAGING) private readonly staging?: RebuildStaging,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.staging?.abandonRebuild();
    await this.writer.recoverPendingWrites();
    await this.jobs.markInterrupted();
    this.deletes.retry();
  }
}
