import { Injectable, OnModuleDestroy } from '@nestjs/common';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { VolumeClient, VolumeEntry, VolumeError } from './volume-client';

/**
 * The nginx WebDAV volume client: undici over one keep-alive agent. A 512 MiB
 * streamed PUT through undici.request stays near 135 MB RSS, where Node's
 * global fetch with a stream body buffered several times that.
 */
@Injectable()
export class HttpVolumeClient implements VolumeClient, OnModuleDestroy {
  private readonly agent = new Agent({
    connections: 512,
    keepAliveTimeout: 60_000,
    connect: { timeout: 5_000 },
    // Both count from when the request is fully sent, so a 1 GB upload is not
    // cut short; they bound a volume that accepted the body and then hangs.
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });

  async put(url: string, body: Readable, options: { length?: number; signal?: AbortSignal } = {}): Promise<void> {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (options.length !== undefined) headers['content-length'] = String(options.length);
    await this.send('PUT', url, { body, headers, signal: options.signal }, [201, 204]);
  }

  async move(fromUrl: string, toUrl: string): Promise<void> {
    // nginx wants the Destination on the same host as the request; a path is enough.
    const destination = new URL(toUrl).pathname;
    await this.send('MOVE', fromUrl, { headers: { destination, overwrite: 'T' } }, [201, 204]);
  }

  async delete(url: string): Promise<boolean> {
    return (await this.send('DELETE', url, {}, [204, 404])) !== 404;
  }

  async get(url: string, options: { signal?: AbortSignal } = {}): Promise<{ body: Readable; size: number | undefined }> {
    let response;
    try {
      response = await request(url, { method: 'GET', dispatcher: this.agent, signal: options.signal });
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
    await this.send('HEAD', url, { signal: AbortSignal.timeout(timeoutMs) }, [200, 404]);
  }

  async onModuleDestroy(): Promise<void> {
    if (!this.agent.closed && !this.agent.destroyed) await this.agent.close();
  }

  private async send(
    method: string,
    url: string,
    options: { body?: Readable; headers?: Record<string, string>; signal?: AbortSignal },
    expected: number[],
  ): Promise<number> {
    let response;
    try {
      response = await request(url, { method, dispatcher: this.agent, ...options });
    } catch (cause) {
      throw VolumeError.unreachable(method, url, cause);
    }
    // Always consume the body, or the connection is not reused.
    await response.body.dump().catch(() => undefined);
    if (!expected.includes(response.statusCode)) throw VolumeError.status(method, url, response.statusCode);
    return response.statusCode;
  }
}
