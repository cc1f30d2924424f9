import { DynamicModule, Module } from '@nestjs/common';
import { ConfigModule } from './config/config.module';
import { MkvConfig } from './config/mkv-config';
import { HashingModule } from './hashing/hashing.module';
import { HealthModule } from './health/health.module';
import { IndexModule } from './index/index.module';
import { JobsModule } from './jobs/jobs.module';
import { KeysModule } from './keys/keys.module';
import { RebalanceModule } from './rebalance/rebalance.module';
import { RebuildModule } from './rebuild/rebuild.module';
import { VolumesModule } from './volumes/volumes.module';

/** Everything but HTTP and timers: what the CLI's jobs run on, and what the server adds controllers to. */
@Module({})
export class CoreModule {
  static forRoot(config: MkvConfig): DynamicModule {
    return {
      module: CoreModule,
      imports: [ConfigModule.forRoot(config), IndexModule, HashingModule, VolumesModule, HealthModule, KeysModule, JobsModule, RebuildModule, RebalanceModule],
      exports: [IndexModule, HashingModule, VolumesModule, HealthModule, KeysModule, JobsModule, RebuildModule, RebalanceModule],
    };
  }
}
