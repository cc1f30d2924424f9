import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';

const agent = new Agent({ keepAliveTimeout: 10_000 });

export interface TestResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  text: string;
}

/**
 * One HTTP request as a user's client makes it: no redirect followed, the
 * whole answer read. `rawPath` is sent as it is (WHATWG URLs would resolve
 * `..` and `%2E%2E` before the server could refuse them).
 */
export async function http(
  method: string,
  url: string,
  { body, headers, rawPath }: { body?: string | Buffer | Readable; headers?: Record<string, string>; rawPath?: string } = {},
): Promise<TestResponse> {
  if (rawPath !== undefined) return rawRequest(method, url, rawPath, body as string | undefined);
  const response = await request(url, { method, body, headers, dispatcher: agent });
  const bytes = Buffer.from(await response.body.arrayBuffer());
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(response.headers)) flat[name] = Array.isArray(value) ? value.join(', ') : String(value);
  return { status: response.statusCode, headers: flat, body: bytes, text: bytes.toString('utf8') };
}

/** node:http sends the path verbatim; undici, even given a path, normalizes it. */
function rawRequest(method: string, origin: string, path: string, body?: string): Promise<TestResponse> {
  return new Promise((done, fail) => {
    const req = httpRequest(origin, { method, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const bytes = Buffer.concat(chunks);
        const headers = Object.fromEntries(Object.entries(res.headers).map(([k, v]) => [k, String(v)]));
        done({ status: res.statusCode ?? 0, headers, body: bytes, text: bytes.toString('utf8') });
      });
    });
    req.on('error', fail);
    req.end(body);
  });
}

/** The key as a URL path, each segment percent-encoded, as the README tells clients to send it. */
export function keyUrl(server: string, key: string): string {
  return `${server}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

export function md5(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}
