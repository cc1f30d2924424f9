import { Module } from '@nestjs/common';
import { MkvConfig } from '../config/mkv-config';
import { MkvLogger } from './mkv-logger';
import { RequestLog } from './request-log';
import { createRootLogger, ROOT_LOGGER } from './root-logger';

/**
 * Structured JSON logs (pino) on stdout. No per-request middleware and no
 * AsyncLocalStorage: both cost more than a GET itself (the latter turns on
 * promise hooks for every promise in the process). The request id reaches
 * the lines that need it (a request's error, the request line) from the
 * Fastify request.
 */
@Module({
  providers: [
    { provide: ROOT_LOGGER, inject: [MkvConfig], useFactory: (config: MkvConfig) => createRootLogger(config) },
    MkvLogger,
    RequestLog,
  ],
  exports: [MkvLogger],
})
export class LoggingModule {}
