import { All, Controller, Delete, Get, Head, Put, Query, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { MkvError, MkvErrorCode } from '../common/mkv-error';
import { queryPipe } from '../common/query-validation';
import type { KeyRecord } from '../index/key-record';
import { KeyWriter } from './key-writer.service';
import { RawPath } from './key-path.decorator';
import { isAdminPath, parseKey } from '../common/key-path';
import { KeysService } from './keys.service';
import { DEFAULT_LIST_LIMIT, ListQueryDto } from './list-query.dto';
import { ListingRoute } from './listing-route';
import { UnlinkRequested } from './unlink-request';

/** What a key path takes (UNLINK arrives as a marked DELETE). */
const KEY_METHODS = ['GET', 'HEAD', 'PUT', 'DELETE', 'UNLINK'] as const;

/** The key API: PUT, GET (a 302 to a volume), HEAD, DELETE, UNLINK and the listings. */
@ApiExcludeController() // the key API is raw bytes over wildcard routes; the README describes it
@Controller()
export class KeysController {
  constructor(
    private readonly keys: KeysService,
    private readonly writer: KeyWriter,
  ) {}

  /** `GET /?prefix=p&limit=n&start=k`: keys without a leading '/'. */
  @Get()
  async listRoot(@Query(queryPipe) { prefix, start, limit, unlinked }: ListQueryDto) {
    return this.keys.list({ prefix: prefix ?? '', start, limit: limit ?? DEFAULT_LIST_LIMIT, state: unlinked === undefined ? 'live' : 'unlinked' });
  }

  /** minikeyvalue's `GET /{prefix}?list` and `?unlinked` (the query routes them here): keys with a leading '/'. */
  @Get('*')
  @ListingRoute()
  async listUnder(@RawPath() path: string, @Query(queryPipe) { start, limit, unlinked }: ListQueryDto) {
    let prefix: string;
    try {
      prefix = decodeURIComponent(path);
    } catch {
      throw new MkvError(MkvErrorCode.InvalidRequest, 'invalid prefix: bad percent-encoding');
    }
    const page = await this.keys.list({
      prefix,
      start: start?.replace(/^\//, ''),
      limit: limit ?? DEFAULT_LIST_LIMIT,
      state: unlinked === undefined ? 'live' : 'unlinked',
    });
    return { keys: page.keys.map((key) => `/${key}`), next: page.next && `/${page.next}` };
  }

  @Get('*')
  async get(@RawPath() path: string, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    if (isAdminPath(path)) throw noAdminRoute(request); // not a key to read
    const location = await this.keys.locate(parseKey(path));
    reply.status(302).header('location', location.url);
    if (location.record) setValueHeaders(reply, location.record);
  }

  @Head('*')
  async head(@RawPath() path: string, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    if (isAdminPath(path)) throw noAdminRoute(request);
    const record = await this.keys.stat(parseKey(path));
    setValueHeaders(reply, record);
    reply.header('content-length', String(record.size));
  }

  @Put('*')
  async put(@RawPath() path: string, @Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply) {
    const { created } = await this.writer.put(parseKey(path), request.raw, declaredLength(request), continueSender(request, reply));
    reply.status(created ? 201 : 204);
  }

  /** DELETE, and UNLINK (which the HTTP adapter routes here, marked). */
  @Delete('*')
  async delete(@RawPath() path: string, @UnlinkRequested() unlink: boolean, @Res({ passthrough: true }) reply: FastifyReply) {
    const key = parseKey(path);
    await (unlink ? this.keys.unlink(key) : this.keys.delete(key));
    reply.status(204);
  }

  /**
   * Any other method (PATCH, POST, PROPFIND, ...; UNLINK under /_admin): 405
   * with Allow on a key. Under /_admin, which no key route serves, 405 where
   * an admin route takes the path with another method, else 404. Declared
   * last: it is the fallback for the methods the routes above do not take
   * (see the HTTP adapter).
   */
  @All('*')
  refuseMethod(@RawPath() path: string, @Req() request: FastifyRequest): never {
    if (isAdminPath(path)) throw noAdminRoute(request);
    throw MkvError.methodNotAllowed(request.method, path === '' ? ['GET'] : KEY_METHODS);
  }
}

/** No admin route takes this request: 405 with the methods that would be taken at its path, or 404 where none would. */
function noAdminRoute(request: FastifyRequest): MkvError {
  const allowed = methodsRoutedAt(request);
  return allowed.length > 0 ? MkvError.methodNotAllowed(request.method, allowed) : MkvError.notFound();
}

/** The methods a route other than the key API's wildcard takes at this request's URL. */
function methodsRoutedAt(request: FastifyRequest): string[] {
  const fastify = request.server;
  return fastify.supportedMethods.filter((method) => {
    const route = fastify.findRoute({ method, url: request.raw.url ?? '/' });
    return route !== null && !('*' in route.params);
  });
}

function setValueHeaders(reply: FastifyReply, record: KeyRecord): void {
  // A key a rebuild found has no MD5 until it is written again: no header
  // beats an empty one (every such key would share the ETag "").
  if (record.md5) reply.header('content-md5', record.md5).header('etag', `"${record.md5}"`);
  reply.header('last-modified', new Date(record.updatedAt).toUTCString());
}

/** The body's length when the client said it; 0 for a request with no body at all. */
function declaredLength(request: FastifyRequest): number | undefined {
  const header = request.headers['content-length'];
  if (header !== undefined) return Number(header);
  return request.headers['transfer-encoding'] === undefined ? 0 : undefined;
}

/** What sends `100 Continue` to a client that waits for it before sending its body (see the HTTP adapter); undefined for any other. */
function continueSender(request: FastifyRequest, reply: FastifyReply): (() => void) | undefined {
  const expectsContinue = request.raw.httpVersion === '1.1' && /(?:^|\W)100-continue(?:$|\W)/i.test(request.headers.expect ?? '');
  return expectsContinue ? () => reply.raw.writeContinue() : undefined;
}
