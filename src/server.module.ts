import { DynamicModule, Inject, Module, OnApplicationBootstrap } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { TerminusModule } from '@nestjs/terminus';
import { AdminController } from './admin/admin.controller';
import { MkvExceptionFilter } from './common/mkv-exception.filter';
import { MkvConfig } from './config/mkv-config';
import { CoreModule } from './core.module';
import { HealthChecker } from './health/health-checker.service';
import { HealthController } from './health/health.controller';
import { KEY_INDEX, KeyIndex } from './index/key-index';
import { MetricsController } from './metrics/metrics.controller';
import { MetricsModule } from './metrics/metrics.module';
import { JobsService } from './jobs/jobs.service';
import { KeyWriter } from './keys/key-writer.service';
import { LoggingModule } from './logging/logging.module';
import { KeysController } from './keys/keys.controller';
import { DeleteRetrier } from './keys/delete-retrier.service';

/** The HTTP server: the core plus controllers, the volume probes, metrics and the one exception filter. */
@Module({})
export class ServerModule implements OnApplicationBootstrap {
  constructor(
    private readonly writer: KeyWriter,
    private readonly deletes: DeleteRetrier,
    private readonly jobs: JobsService,
    @Inject(KEY_INDEX) private readonly index: KeyIndex,
  ) {}

  /**
   * The index is this process's alone (IndexOwner), so whatever it holds half
   * done is a dead process's, and the server finishes or clears it: a
   * rebuild's staging (its triggers would otherwise note every write until
   * the next rebuild), interrupted writes (finished before it listens: the
   * index already names their new values) and jobs. Undone blob deletes are
   * retried in the background (and again whenever a volume comes back up,
   * and every minute): they may wait on a volume that is still down, and
   * every one takes its key's lock.
   */
  async onApplicationBootstrap(): Promise<void> {
    await this.index.abandonRebuild();
    await this.writer.recoverPendingWrites();
    await this.jobs.markInterrupted();
    this.deletes.retry();
  }

  static forRoot(config: MkvConfig): DynamicModule {
    return {
      module: ServerModule,
      imports: [CoreModule.forRoot(config), LoggingModule, ScheduleModule.forRoot(), TerminusModule, MetricsModule],
      controllers: [AdminController, HealthController, MetricsController, KeysController],
      providers: [HealthChecker, DeleteRetrier, { provide: APP_FILTER, useClass: MkvExceptionFilter }],
    };
  }
}
