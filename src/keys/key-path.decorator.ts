import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { rawPathOf } from '../common/key-path';

/**
 * The request path without its leading '/' and query, still percent-encoded.
 * Read from the raw URL rather than the router's param so that decoding and
 * validation happen once, in parseKey, by the API's own rules.
 */
export const RawPath = createParamDecorator((_data: unknown, context: ExecutionContext): string => {
  return rawPathOf(context.switchToHttp().getRequest<FastifyRequest>().raw.url ?? '/');
});
