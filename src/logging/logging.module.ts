import { Module } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import { MkvConfig } from '../config/mkv-config';
import { MkvLogger } from './mkv-logger';

/**
 * Structured JSON logs (pino) with a request id on every line a request
 * causes (Fastify's request id: the caller's X-Request-Id or a new UUID,
 * echoed back). One line per request only with --log-requests: at thousands
 * of requests a second it costs more than the request itself.
 */
@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [MkvConfig],
      useFactory: (config: MkvConfig) => ({
        pinoHttp: {
          level: config.logLevel,
          autoLogging: config.logRequests,
          quietReqLogger: true,
        },
      }),
    }),
  ],
  providers: [MkvLogger],
  exports: [MkvLogger],
})
export class LoggingModule {}
