import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';

/**
 * The request path without its leading '/' and query, still percent-encoded.
 * Read from the raw URL rather than the router's param so that decoding and
 * validation happen once, in parseKey, by the API's own rules.
 */
export const RawPath = createParamDecorator((_data: unknown, context: ExecutionContext): string => {
  const url = context.switchToHttp().getRequest<FastifyRequest>().raw.url ?? '/';
  const queryAt = url.indexOf('?');
  return (queryAt === -1 ? url : url.slice(0, queryAt)).slice(1);
});
