import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { TerminusModule } from '@nestjs/terminus';
import { AdminController } from './admin/admin.controller';
import { CoreModule } from './core.module';
import { HealthChecker } from './health/health-checker.service';
import { HealthController } from './health/health.controller';
import { MkvExceptionFilter } from './http/mkv-exception.filter';
import { DeleteRetrier } from './keys/delete-retrier.service';
import { KeysController } from './keys/keys.controller';
import { LoggingModule } from './logging/logging.module';
import { MetricsController } from './metrics/metrics.controller';
import { MetricsModule } from './metrics/metrics.module';
import type { MkvModuleOptions } from './mkv-options';
import { StartupRecovery } from './startup/startup-recovery.service';

/**
 * The mkv server as a Nest module: the core (index, volumes, placement, key
 * and admin services, each replaceable through the options), the
 * controllers, the volume probes, metrics, start-up recovery and the one
 * exception filter. createServer runs it on the streaming Fastify adapter.
 */
@Module({})
export class MkvModule {
  static forRoot(options: MkvModuleOptions): DynamicModule {
    return {
      module: MkvModule,
      imports: [CoreModule.forRoot(options), LoggingModule, ScheduleModule.forRoot(), TerminusModule, MetricsModule],
      // The key routes last: their @All('*') takes only the methods no route before it took.
      controllers: [AdminController, HealthController, MetricsController, KeysController],
      providers: [HealthChecker, DeleteRetrier, StartupRecovery, { provide: APP_FILTER, useClass: MkvExceptionFilter }],
    };
  }
}
