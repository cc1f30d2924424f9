import type { HttpAdapterHost } from '@nestjs/core';
import Fastify from 'fastify';
import { Writable } from 'node:stream';
import type { MkvConfig } from '../config/mkv-config';
import { RequestLog } from './request-log';
import { createRootLogger } from './root-logger';

async function serve(logRequests: boolean) {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()));
      done();
    },
  });
  const fastify = Fastify({ requestIdHeader: 'x-request-id' });
  fastify.get('/k', (_request, reply) => reply.status(302).header('location', 'http://v1/k').send());
  const adapterHost = { httpAdapter: { getInstance: () => fastify } } as unknown as HttpAdapterHost;
  new RequestLog({ logRequests } as MkvConfig, adapterHost, createRootLogger({ logLevel: 'info' }, sink)).onModuleInit();
  await fastify.inject({ method: 'GET', url: '/k', headers: { 'x-request-id': 'trace-9' } });
  await fastify.close();
  return lines;
}

describe('RequestLog', () => {
  it('logs one line per answered request with --log-requests', async () => {
    expect(await serve(true)).toEqual([
      expect.objectContaining({ level: 30, reqId: 'trace-9', method: 'GET', url: '/k', status: 302, msg: 'request completed' }),
    ]);
  });

  it('logs nothing per request by default', async () => {
    expect(await serve(false)).toEqual([]);
  });
});
