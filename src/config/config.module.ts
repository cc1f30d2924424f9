import { DynamicModule, Global, Module } from '@nestjs/common';
import { MkvConfig } from './mkv-config';

/** Makes the one validated MkvConfig injectable everywhere; tests pass their own. */
@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: MkvConfig): DynamicModule {
    return { module: ConfigModule, providers: [{ provide: MkvConfig, useValue: config }], exports: [MkvConfig] };
  }
}
