import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import type { ExecutionContext } from '@nestjs/common';
import { readdirSync, readFileSync } from 'node:fs';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { markUnlinkRequest, UnlinkRequested } from './unlink-request';

/** What `@UnlinkRequested()` hands the handler for this raw request. */
function unlinkRequested(raw: IncomingMessage): boolean {
  class Probe {
    handler(@UnlinkRequested() _unlink: boolean) {}
  }
  const args = Reflect.getMetadata(ROUTE_ARGS_METADATA, Probe, 'handler') as Record<string, { factory: (data: unknown, context: ExecutionContext) => boolean }>;
  const { factory } = Object.values(args)[0];
  const context = { switchToHttp: () => ({ getRequest: () => ({ raw }) }) } as unknown as ExecutionContext;
  return factory(undefined, context);
}

function request(method: string, url: string, headers: Record<string, string> = {}): IncomingMessage {
  const raw = new IncomingMessage(new Socket());
  Object.assign(raw, { method, url, headers });
  return raw;
}

describe('UNLINK, marked on the request', () => {
  it('a request the adapter marked is an UNLINK', () => {
    const raw = request('DELETE', '/k');
    markUnlinkRequest(raw);
    expect(unlinkRequested(raw)).toBe(true);
  });

  // The mark is a symbol: nothing a client sends can set it, so a DELETE can never pass for an UNLINK or the reverse.
  it.each([
    ['a plain DELETE', request('DELETE', '/k')],
    ['a header naming the mark', request('DELETE', '/k', { 'mkv.unlink': 'true', unlink: 'true' })],
    ['a query naming the mark', request('DELETE', '/k?mkv.unlink=true&unlink')],
  ])('%s is not', (_what, raw) => {
    expect(unlinkRequested(raw)).toBe(false);
  });
});

// The key API's mark lives in keys/ and the HTTP adapter imports it (http -> keys): the old
// import the other way round (keys.controller -> http adapter -> MkvModule -> controller) was a cycle.
describe('src/keys', () => {
  it('imports nothing from src/http', () => {
    const keysDir = __dirname;
    const httpDir = resolve(keysDir, '../http');
    const offending = readdirSync(keysDir)
      .filter((name) => name.endsWith('.ts'))
      .flatMap((name) =>
        [...readFileSync(join(keysDir, name), 'utf8').matchAll(/from '(\.[^']*)'/g)]
          .map(([, specifier]) => resolve(dirname(join(keysDir, name)), specifier))
          .filter((target) => !relative(httpDir, target).startsWith('..'))
          .map((target) => `${name} -> ${relative(keysDir, target)}`),
      );
    expect(offending).toEqual([]);
  });
});
