import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { Client, Dispatcher, Pool } from 'undici';
import { VolumeClient, VolumeEntry, VolumeError } from './volume-client';

/**
 * The nginx WebDAV volume client: undici, one keep-alive pool per volume
 * server. A 512 MiB streamed PUT through undici stays near 135 MB RSS, where
 * Node's global fetch with a stream body buffered several times that.
 *
 * PUT, MOVE, DELETE and HEAD answer with a status and no body worth reading,
 * and a PUT of a small value makes four of them: they go straight to the
 * pool's dispatch with a handler that keeps only the status, without
 * undici.request's URL parsing, response stream and AbortSignal plumbing
 * (about half the CPU of each such request). GET and listings stream, through
 * the pool's request().
 *
 * Probes have a connection of their own per volume, outside the pool: a pool
 * filled by stalled uploads must not hold up the probe that would notice.
 */
@Injectable()
export class HttpVolumeClient implements VolumeClient, OnApplicationShutdown {
  private readonly pools = new Map<string, Pool>();
  private readonly probeClients = new Map<string, Client>();
  private closed = false;

  async put(url: string, body: Readable | Buffer, options: { length?: number; signal?: AbortSignal } = {}): Promise<void> {
    const headers =
      options.length === undefined
        ? ['content-type', 'application/octet-stream']
        : ['content-type', 'application/octet-stream', 'content-length', String(options.length)];
    await this.send('PUT', url, [201, 204], { body, headers }, options.signal);
  }

  async move(fromUrl: string, toUrl: string): Promise<void> {
    // nginx wants the Destination on the same host as the request; a path is enough.
    await this.send('MOVE', fromUrl, [201, 204], { headers: ['destination', splitUrl(toUrl).path, 'overwrite', 'T'] });
  }

  async delete(url: string): Promise<boolean> {
    return (await this.send('DELETE', url, [204, 404])) !== 404;
  }

  async get(url: string, options: { signal?: AbortSignal } = {}): Promise<{ body: Readable; size: number | undefined }> {
    let response;
    try {
      const { origin, path } = splitUrl(url);
      response = await this.pool(origin).request({ path, method: 'GET', signal: options.signal });
    } catch (cause) {
      throw VolumeError.unreachable('GET', url, cause);
    }
    if (response.statusCode !== 200) {
      await response.body.dump().catch(() => undefined);
      throw VolumeError.status('GET', url, response.statusCode);
    }
    const length = response.headers['content-length'];
    return { body: response.body, size: length === undefined ? undefined : Number(length) };
  }

  /**
   * nginx's JSON autoindex puts one entry on each line, so a directory of
   * millions of files is parsed a line at a time instead of held whole.
   */
  async *list(url: string): AsyncIterable<VolumeEntry> {
    const { body } = await this.get(url);
    const lines = createInterface({ input: body, crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        const trimmed = line.trim().replace(/,$/, '');
        if (!trimmed.startsWith('{')) continue;
        const entry = JSON.parse(trimmed) as { name: string; type: string; mtime: string; size?: number };
        if (entry.type !== 'file' && entry.type !== 'directory') continue; // symlinks and the like are not blobs
        yield { name: entry.name, type: entry.type, size: entry.size, mtime: Date.parse(entry.mtime) };
      }
    } catch (cause) {
      throw cause instanceof VolumeError ? cause : VolumeError.unreachable('GET', url, cause);
    } finally {
      lines.close();
      body.destroy();
    }
  }

  async probe(volume: string, timeoutMs: number): Promise<void> {
    // A path that never exists: nginx answers 404 from a stat, without
    // listing a directory that may hold millions of entries.
    const url = `${volume}/.mkv-probe`;
    if (this.closed) throw VolumeError.unreachable('HEAD', url, new Error('client closed'));
    const client = this.probeClient(volume, timeoutMs);
    const deadline = probeDeadline(timeoutMs);
    try {
      await this.send('HEAD', url, [200, 404], { dispatcher: client }, deadline.signal);
    } catch (error) {
      // A connection that failed or hung is not reused: the next probe starts afresh.
      this.probeClients.delete(volume);
      client.destroy().catch(() => undefined);
      throw error;
    } finally {
      deadline.clear();
    }
  }

  /**
   * After the HTTP server has drained, not at module destroy: Nest destroys
   * modules before it stops the server, and a PUT still in flight would lose
   * its volumes halfway (a 502, and its uploads left behind).
   */
  async onApplicationShutdown(): Promise<void> {
    this.closed = true;
    const dispatchers = [...this.pools.values(), ...this.probeClients.values()];
    await Promise.all(dispatchers.map((dispatcher) => (dispatcher.closed || dispatcher.destroyed ? undefined : dispatcher.close())));
  }

  /**
   * One connection per volume, for probes only. The probe's deadline bounds
   * the whole exchange; undici's own timeouts are only a backstop, set past
   * it because they cannot tell a late timer from a slow volume.
   */
  private probeClient(volume: string, timeoutMs: number): Client {
    let client = this.probeClients.get(volume);
    if (client === undefined) {
      const backstopMs = 2 * timeoutMs;
      client = new Client(volume, { connect: { timeout: backstopMs }, headersTimeout: backstopMs, bodyTimeout: backstopMs });
      this.probeClients.set(volume, client);
    }
    return client;
  }

  private pool(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (pool === undefined) {
      pool = new Pool(origin, {
        connections: 512,
        keepAliveTimeout: 60_000,
        connect: { timeout: 5_000 },
        // Both count from when the request is fully sent, so a 1 GB upload is not
        // cut short; they bound a volume that accepted the body and then hangs.
        headersTimeout: 60_000,
        bodyTimeout: 60_000,
      });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  /** One request whose answer is its status; rejects unless the status is expected. */
  private async send(
    method: string,
    url: string,
    expected: number[],
    options: { body?: Readable | Buffer; headers?: string[]; dispatcher?: Dispatcher } = {},
    signal?: AbortSignal,
  ): Promise<number> {
    const { origin, path } = splitUrl(url);
    let status: number;
    try {
      status = await new Promise<number>((resolve, reject) => {
        const exchange = new StatusExchange(resolve, reject, signal);
        if (signal?.aborted) exchange.onResponseError(undefined, signal.reason);
        else (options.dispatcher ?? this.pool(origin)).dispatch({ path, method, body: options.body, headers: options.headers }, exchange);
      });
    } catch (cause) {
      throw VolumeError.unreachable(method, url, cause);
    }
    if (!expected.includes(status)) throw VolumeError.status(method, url, status);
    return status;
  }
}

/**
 * Keeps the status of an answer and drops its body (reading it to the end is
 * what lets the connection be reused). An aborted signal aborts the request,
 * and rejects at once even while the request still waits for a connection
 * (it is then never sent).
 */
class StatusExchange implements Dispatcher.DispatchHandler {
  private status = 0;
  private controller: Dispatcher.DispatchController | undefined;
  private readonly onAbort = () => {
    if (this.controller) this.controller.abort(this.signal!.reason);
    else this.reject(this.signal!.reason);
  };

  constructor(
    private readonly resolve: (status: number) => void,
    private readonly reject: (error: unknown) => void,
    private readonly signal: AbortSignal | undefined,
  ) {
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Aborted while the request waited for a connection: it must not be sent.
    if (this.signal?.aborted) controller.abort(this.signal.reason);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number): void {
    this.status = status;
  }

  onResponseData(): void {}

  onResponseEnd(): void {
    this.signal?.removeEventListener('abort', this.onAbort);
    this.resolve(this.status);
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: unknown): void {
    this.signal?.removeEventListener('abort', this.onAbort);
    this.reject(error);
  }
}

/**
 * Aborts after `ms` like AbortSignal.timeout, but one event-loop turn late: a
 * timer that fires late because the process was busy (CPU load) first lets
 * an answer already waiting on the socket be read, so the index's own lag is
 * not taken for a slow volume.
 */
function probeDeadline(ms: number): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timeout = Object.assign(new Error(`no answer within ${ms} ms`), { name: 'TimeoutError' });
  const timer = setTimeout(() => setImmediate(() => controller.abort(timeout)), ms).unref();
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/** `http://host:port/a/b` as its origin and its path (already percent-encoded), without a URL parser. */
function splitUrl(url: string): { origin: string; path: string } {
  const slash = url.indexOf('/', url.indexOf('//') + 2);
  return slash === -1 ? { origin: url, path: '/' } : { origin: url.slice(0, slash), path: url.slice(slash) };
}
