import { DynamicModule, Module, OnApplicationBootstrap } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { TerminusModule } from '@nestjs/terminus';
import { AdminController } from './admin/admin.controller';
import { MkvExceptionFilter } from './common/mkv-exception.filter';
import { MkvConfig } from './config/mkv-config';
import { CoreModule } from './core.module';
import { HealthChecker } from './health/health-checker.service';
import { HealthController } from './health/health.controller';
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
  ) {}

  /**
   * Only the server cleans up after a previous process: a CLI job run beside
   * a live server must not rename uploads the server is handling, nor call
   * its running jobs interrupted. Interrupted writes are finished before it
   * listens (the index already names their new values). Undone blob deletes
   * are retried in the background (and again whenever a volume comes back
   * up, and every minute): they may wait on a volume that is still down, and
   * every one takes its key's lock.
   */
  async onApplicationBootstrap(): Promise<void> {
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
