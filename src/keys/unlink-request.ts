import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';

/**
 * Nest has no decorator for a custom method such as minikeyvalue's UNLINK: the
 * HTTP adapter routes it to the key API's DELETE route, marked on the raw
 * request. A symbol, so no header or query parameter can forge the mark.
 */
const UNLINK = Symbol('mkv.unlink');

type MarkedRequest = IncomingMessage & { [UNLINK]?: boolean };

/** Marks a request that arrived as UNLINK (before the adapter turns it into a DELETE). */
export function markUnlinkRequest(raw: IncomingMessage): void {
  (raw as MarkedRequest)[UNLINK] = true;
}

/** True for a request the adapter marked as UNLINK. */
export function isUnlinkRequest(raw: IncomingMessage): boolean {
  return (raw as MarkedRequest)[UNLINK] === true;
}

/** The handler's parameter: true when the DELETE arrived as UNLINK. */
export const UnlinkRequested = createParamDecorator((_data: unknown, context: ExecutionContext): boolean =>
  isUnlinkRequest(context.switchToHttp().getRequest<FastifyRequest>().raw),
);
