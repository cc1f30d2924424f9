import { DynamicModule, Module } from '@nestjs/common';
import { ConfigModule } from './config/config.module';
import { MkvConfig } from './config/mkv-config';
import { HashingModule } from './hashing/hashing.module';
import { IndexModule } from './index/index.module';
import { KeysModule } from './keys/keys.module';
import { VolumesModule } from './volumes/volumes.module';

/** Everything but HTTP: what the CLI's jobs run on, and what the server adds controllers to. */
@Module({})
export class CoreModule {
  static forRoot(config: MkvConfig): DynamicModule {
    return {
      module: CoreModule,
      imports: [ConfigModule.forRoot(config), IndexModule, HashingModule, VolumesModule, KeysModule],
      exports: [IndexModule, HashingModule, VolumesModule, KeysModule],
    };
  }
}
