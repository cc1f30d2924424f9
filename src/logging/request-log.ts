import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { MkvConfig } from '../config/mkv-config';
import { ROOT_LOGGER } from './root-logger';

/**
 * One line per answered request, only with --log-requests: at tens of
 * thousands of requests a second it costs more than the request itself.
 * A Fastify hook rather than a Nest middleware, which would put Fastify's
 * middleware layer on every request even when it logs nothing.
 */
@Injectable()
export class RequestLog implements OnModuleInit {
  constructor(
    private readonly config: MkvConfig,
    private readonly adapterHost: HttpAdapterHost,
    @Inject(ROOT_LOGGER) private readonly pino: Logger,
  ) {}

  onModuleInit(): void {
    const fastify = this.adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    if (!this.config.logRequests || !fastify) return;
    fastify.addHook('onResponse', (request, reply, done) => {
      this.pino.info(
        { reqId: request.id, method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 },
        'request completed',
      );
      done();
    });
  }
}
