import { DynamicModule, Module, OnApplicationBootstrap } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { MkvExceptionFilter } from './common/mkv-exception.filter';
import { MkvConfig } from './config/mkv-config';
import { CoreModule } from './core.module';
import { KeyWriter } from './keys/key-writer.service';
import { KeysController } from './keys/keys.controller';

/** The HTTP server: the core plus controllers and the one exception filter. */
@Module({})
export class ServerModule implements OnApplicationBootstrap {
  constructor(private readonly writer: KeyWriter) {}

  /**
   * Only the server finishes interrupted writes, before it listens: a CLI job
   * run beside a live server must not rename uploads the server is handling.
   */
  async onApplicationBootstrap(): Promise<void> {
    await this.writer.recoverPendingWrites();
  }

  static forRoot(config: MkvConfig): DynamicModule {
    return {
      module: ServerModule,
      imports: [CoreModule.forRoot(config)],
      controllers: [KeysController],
      providers: [{ provide: APP_FILTER, useClass: MkvExceptionFilter }],
    };
  }
}
