import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { FastifyError, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import { randomUUID } from 'node:crypto';
import { METHODS, STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { invalidKey, isAdminPath, rawPathOf } from '../common/key-path';
import { keyListingConstraint } from '../keys/listing-route';
import { markUnlinkRequest } from '../keys/unlink-request';

/**
 * `@All(path)` as a fallback: it takes only the methods no route of the same
 * path has yet (Fastify's own `all` claims every method and fails on a
 * duplicate). Declare it after the path's other routes. The handler stays a
 * Nest route: guards, interceptors and the exception filter apply.
 */
class FallbackAllAdapter extends FastifyAdapter {
  override all(path: string, handler: RouteHandlerMethod) {
    const fastify = this.getInstance();
    const method = fastify.supportedMethods.filter((candidate) => !fastify.hasRoute({ method: candidate, url: path }));
    return fastify.route({ method, url: path, handler });
  }
}

/**
 * Node's parser refused the request (malformed, headers over 16 KiB, ...), so
 * it never reaches Fastify or Nest: answer in plain text like every other
 * error (Fastify's default answers JSON), then drop the connection, whose
 * remaining bytes cannot be trusted.
 */
function answerClientError(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, message] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'request headers too large']
      : error.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
        ? [413, 'chunk extensions too large']
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'request timeout']
          : [400, 'malformed HTTP request'];
  // As Node does: no answer once a response has begun on this socket (it would corrupt it).
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent: boolean } })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(message)}\r\nconnection: close\r\n\r\n${message}`,
    );
  }
  socket.destroy(error);
}

/**
 * The Fastify adapter for a blob store: request bodies are left unread for the
 * handlers to stream (Nest's and Fastify's parsers would buffer them, and 413
 * above 1 MiB), and no time limit cuts a long upload short.
 */
export function streamingAdapter(): FastifyAdapter {
  const adapter = new FallbackAllAdapter({
    // HEAD has its own handler: the automatic one would send the GET's length.
    exposeHeadRoutes: false,
    routerOptions: { maxParamLength: 16_384 },
    requestTimeout: 0,
    return503OnClosing: false, // answered by the onRequest hook below, in plain text
    // The caller's X-Request-Id, or a new one; every log line of the request carries it.
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    // A path the router cannot even decode never reaches Nest; answer it in
    // the API's words rather than Fastify's JSON.
    frameworkErrors(error: FastifyError, _request: FastifyRequest, reply: FastifyReply) {
      const badUrl = error.code === 'FST_ERR_BAD_URL';
      void reply
        .status(badUrl ? 400 : (error.statusCode ?? 400))
        .header('content-type', 'text/plain; charset=utf-8')
        .header('connection', 'close') // the body, if any, was never read
        .send(badUrl ? invalidKey('bad percent-encoding').message : error.message);
    },
    clientErrorHandler: answerClientError,
    // Nest has no decorator for a custom method such as UNLINK, so it reaches
    // the key API's DELETE route marked on the raw request (the mark cannot be
    // forged by a header or query). UNLINK is the key API's only: under
    // /_admin it stays UNLINK, so it can never reach an admin DELETE route
    // (which cancels a job); the key routes' fallback answers it.
    rewriteUrl(req: IncomingMessage) {
      if (req.method === 'UNLINK' && !isAdminPath(rawPathOf(req.url ?? '/'))) {
        markUnlinkRequest(req);
        req.method = 'DELETE';
      }
      return req.url ?? '/';
    },
  });
  const fastify = adapter.getInstance();
  // Every method Node's parser accepts reaches the router, so that the key
  // routes' fallback answers 405 rather than Nest's 404 `Cannot PROPFIND /k`.
  // (CONNECT never does: Node hands it to a 'connect' listener.)
  for (const method of METHODS) {
    if (method !== 'CONNECT' && !fastify.supportedMethods.includes(method)) fastify.addHttpMethod(method, { hasBody: true });
  }
  // A PUT's body is the value, streamed from the raw request by the key API:
  // Fastify is told PUT carries none, so it runs no content-type parser for
  // it (on Node 20 the parser's per-request AsyncResource cost a small PUT
  // about 5% of its CPU). Other methods keep the pass-through parser below.
  fastify.addHttpMethod('PUT', { hasBody: false, overrideExisting: true });
  fastify.addConstraintStrategy(keyListingConstraint); // GET /{prefix}?list: the key API's listing route
  // Expect: 100-continue. Node would send `100 Continue` before routing; the
  // request goes through the router as any other instead, and the PUT path
  // sends the 100 once the key is known good (KeyWriter.put), so a refused
  // key is answered before the client sends its body.
  fastify.server.on('checkContinue', (req, res) => fastify.server.emit('request', req, res));
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', (_request, _payload, done) => done(null)); // handlers stream req.raw themselves
  // A request that arrives on a busy keep-alive connection once the shutdown
  // began is refused, in plain text like every other error (Fastify's own
  // answer, return503OnClosing, is JSON).
  let closing = false;
  fastify.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    if (closing) {
      void reply.status(503).header('content-type', 'text/plain; charset=utf-8').header('connection', 'close').send('server is shutting down');
      return;
    }
    done();
  });
  // On close the server waits for every connection; Fastify closes the idle
  // ones once, at the start. A keep-alive connection whose request was still
  // in flight then would hold the exit for the 72 s keep-alive timeout: close
  // each as it goes idle. (A timer, not a per-request hook: nothing on the hot path.)
  fastify.addHook('preClose', (done) => {
    closing = true;
    const reaper = setInterval(() => fastify.server.closeIdleConnections(), 100).unref(); // never what keeps the process up
    fastify.server.once('close', () => clearInterval(reaper));
    done();
  });
  return adapter;
}
