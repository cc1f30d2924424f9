import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { MkvConfig } from './config/mkv-config';
import { invalidKey } from './keys/key-path';
import { MkvLogger } from './logging/mkv-logger';
import { ServerModule } from './server.module';

const UNLINK = Symbol('mkv.unlink');

/** True for a request that arrived as minikeyvalue's UNLINK method. */
export function isUnlinkRequest(raw: IncomingMessage): boolean {
  return (raw as IncomingMessage & { [UNLINK]?: boolean })[UNLINK] === true;
}

/**
 * The Fastify adapter for a blob store: request bodies are left unread for the
 * handlers to stream (Nest's and Fastify's parsers would buffer them, and 413
 * above 1 MiB), and no time limit cuts a long upload short.
 */
export function streamingAdapter(): FastifyAdapter {
  const adapter = new FastifyAdapter({
    // HEAD has its own handler: the automatic one would send the GET's length.
    exposeHeadRoutes: false,
    routerOptions: { maxParamLength: 16_384 },
    requestTimeout: 0,
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
        .send(badUrl ? invalidKey('bad percent-encoding').message : error.message);
    },
    // Nest has no decorator for a custom method such as UNLINK, so it reaches
    // the DELETE route marked on the raw request (the mark cannot be forged by
    // a header or query).
    rewriteUrl(req: IncomingMessage) {
      if (req.method === 'UNLINK') {
        (req as IncomingMessage & { [UNLINK]?: boolean })[UNLINK] = true;
        req.method = 'DELETE';
      }
      return req.url ?? '/';
    },
  });
  const fastify = adapter.getInstance();
  // Expect: 100-continue. Node would send `100 Continue` before routing; the
  // request goes through the router as any other instead, and the PUT path
  // sends the 100 once the key is known good (KeyWriter.put), so a refused
  // key is answered before the client sends its body.
  fastify.server.on('checkContinue', (req, res) => fastify.server.emit('request', req, res));
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', (_request, _payload, done) => done(null)); // handlers stream req.raw themselves
  fastify.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  // On close the server waits for every connection; Fastify closes the idle
  // ones once, at the start. A keep-alive connection whose request was still
  // in flight then would hold the exit for the 72 s keep-alive timeout: close
  // each as it goes idle. (A timer, not a per-request hook: nothing on the hot path.)
  fastify.addHook('preClose', (done) => {
    const reaper = setInterval(() => fastify.server.closeIdleConnections(), 100).unref(); // never what keeps the process up
    fastify.server.once('close', () => clearInterval(reaper));
    done();
  });
  return adapter;
}

/** The server as `mkv serve` runs it: Nest on the streaming adapter, pino logs, the admin API's OpenAPI page. */
export async function createServer(config: MkvConfig): Promise<NestFastifyApplication> {
  const app = await NestFactory.create<NestFastifyApplication>(ServerModule.forRoot(config), streamingAdapter(), {
    bodyParser: false,
    bufferLogs: true,
  });
  app.useLogger(app.get(MkvLogger));
  const openApi = new DocumentBuilder()
    .setTitle('mkv admin API')
    .setDescription('Jobs (rebuild, rebalance), volume health, readiness and metrics. The key API is described in the README.')
    .build();
  SwaggerModule.setup('_admin/docs', app, () => SwaggerModule.createDocument(app, openApi));
  app.enableShutdownHooks();
  return app;
}
