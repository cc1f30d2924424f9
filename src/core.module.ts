import { DynamicModule, Module } from '@nestjs/common';
import { AdminModule } from './admin/admin.module';
import { ConfigModule } from './config/config.module';
import { HashingModule } from './hashing/hashing.module';
import { HealthModule } from './health/health.module';
import { IndexModule } from './index/index.module';
import { KeysModule } from './keys/keys.module';
import type { MkvModuleOptions } from './mkv-options';
import { VolumesModule } from './volumes/volumes.module';

/**
 * Everything but HTTP and timers: what the CLI's jobs run on, and what
 * MkvModule adds controllers to. The index, the volume client and the
 * placement are global, each the team's replacement where one is given, so
 * every module gets the same one.
 */
@Module({})
export class CoreModule {
  static forRoot(options: MkvModuleOptions): DynamicModule {
    return {
      module: CoreModule,
      imports: [
        ConfigModule.forRoot(options.config),
        IndexModule.forRoot(options.index),
        HashingModule.forRoot(options.placement),
        VolumesModule.forRoot(options.volumeClient),
        HealthModule,
        KeysModule,
        AdminModule,
        ...(options.imports ?? []),
      ],
      exports: [HealthModule, KeysModule, AdminModule],
    };
  }
}
