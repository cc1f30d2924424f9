import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { MkvExceptionFilter } from './common/mkv-exception.filter';
import { MkvConfig } from './config/mkv-config';
import { CoreModule } from './core.module';
import { KeysController } from './keys/keys.controller';

/** The HTTP server: the core plus controllers and the one exception filter. */
@Module({})
export class ServerModule {
  static forRoot(config: MkvConfig): DynamicModule {
    return {
      module: ServerModule,
      imports: [CoreModule.forRoot(config)],
      controllers: [KeysController],
      providers: [{ provide: APP_FILTER, useClass: MkvExceptionFilter }],
    };
  }
}
