import { RouteConstraints } from '@nestjs/platform-fastify';
import type { FastifyInstance } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { isAdminPath, rawPathOf } from '../common/key-path';

type ConstraintStrategy = Parameters<FastifyInstance['addConstraintStrategy']>[0];
type Store = ReturnType<ConstraintStrategy['storage']>;

const CONSTRAINT = 'mkvKeyListing';
const LISTING = 'listing';

/**
 * minikeyvalue's `GET /{prefix}?list` and `?unlinked` share their path with
 * `GET /{key}`; only the query tells them apart. This route constraint,
 * derived from the query string, sends them to a handler of their own, and
 * every other GET (an /_admin path too) to the key's. The HTTP adapter
 * registers it: a Fastify serving the key routes must know it. Not
 * `mustMatchWhenDerived`: a path with no listing route (`GET /?list`, any
 * PUT or HEAD) still reaches its own.
 */
export const keyListingConstraint: ConstraintStrategy = {
  name: CONSTRAINT,
  storage() {
    const handlers = new Map<unknown, Parameters<Store['set']>[1]>();
    return {
      get: (value: unknown) => handlers.get(value) ?? null,
      set: (value: unknown, handler: Parameters<Store['set']>[1]) => void handlers.set(value, handler),
    };
  },
  deriveConstraint: (req: IncomingMessage) => (isListingQuery(req.url ?? '/') ? LISTING : undefined),
};

/** The route of a listing: a GET whose query names `list` or `unlinked` (any value), outside /_admin. */
export const ListingRoute = () => RouteConstraints({ [CONSTRAINT]: LISTING });

function isListingQuery(url: string): boolean {
  const start = url.indexOf('?');
  if (start === -1 || isAdminPath(rawPathOf(url))) return false; // /_admin is no prefix: the key route answers 404 or 405 there
  const query = new URLSearchParams(url.slice(start + 1));
  return query.has('list') || query.has('unlinked');
}
