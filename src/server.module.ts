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
import { KeysService } from './keys/keys.service';

/** The HTTP server: the core plus controllers, the volume probes, metrics and the one exception filter. */
@Module({})
export class ServerModule implements OnApplicationBootstrap {
  constructor(
    private readonly writer: KeyWriter,
    private readonly keys: KeysService,
    private readonly jobs: JobsService,
  ) {}

  /**
   * Only the server cleans up after a previous process, before it listens: a
   * CLI job run beside a live server must not rename uploads the server is
   * handling, nor call its running jobs interrupted.
   */
  async onApplicationBootstrap(): Promise<void> {
    await this.writer.recoverPendingWrites();
    await this.keys.retryPendingDeletes();
    await this.jobs.markInterrupted();
  }

  static forRoot(config: MkvConfig): DynamicModule {
    return {
      module: ServerModule,
      imports: [CoreModule.forRoot(config), LoggingModule, ScheduleModule.forRoot(), TerminusModule, MetricsModule],
      controllers: [AdminController, HealthController, MetricsController, KeysController],
      providers: [HealthChecker, { provide: APP_FILTER, useClass: MkvExceptionFilter }],
    };
  }
}
