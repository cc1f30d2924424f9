import { Readable } from 'node:stream';
import { VolumeClient, VolumeEntry, VolumeError } from '../../src/volumes/volume-client';

/**
 * Volumes as a map of blob URL to bytes, answering as nginx's WebDAV does
 * where callers depend on it: MOVE answers 404 without a source and 409 when
 * a directory stands at the destination, and so does PUT (409); DELETE of `url/` removes a
 * directory. Failures are injected per volume. For unit specs; the end-to-end
 * suites use real nginx.
 */
export class InMemoryVolumeClient implements VolumeClient {
  readonly blobs = new Map<string, Buffer>();
  /** Volumes whose PUT fails: after reading the whole body (507), or before reading any of it (unreachable). */
  readonly failingPuts = new Map<string, 'after-body' | 'before-body'>();
  /** Volumes whose MOVE fails with this status (undefined: unreachable). */
  readonly failingMoves = new Map<string, number | undefined>();
  /** Volumes whose DELETE and GET fail as unreachable. */
  readonly unreachable = new Set<string>();
  /** Every request made, as `METHOD url`, in order. */
  readonly requests: string[] = [];

  async put(url: string, body: Readable | Buffer): Promise<void> {
    this.requests.push(`PUT ${url}`);
    const failure = this.failingPuts.get(volumeOf(url));
    if (failure === 'before-body') throw VolumeError.unreachable('PUT', url, new Error('connection refused'));
    const chunks: Buffer[] = [];
    if (Buffer.isBuffer(body)) chunks.push(Buffer.from(body));
    else for await (const chunk of body) chunks.push(Buffer.from(chunk as Buffer));
    if (failure === 'after-body') throw VolumeError.status('PUT', url, 507);
    if (this.urlsUnder(`${url}/`).length > 0) throw VolumeError.status('PUT', url, 409); // nginx: a directory stands there
    this.blobs.set(url, Buffer.concat(chunks));
  }

  async move(fromUrl: string, toUrl: string): Promise<void> {
    this.requests.push(`MOVE ${fromUrl} ${toUrl}`);
    const volume = volumeOf(fromUrl);
    if (this.failingMoves.has(volume)) {
      const status = this.failingMoves.get(volume);
      throw status === undefined
        ? VolumeError.unreachable('MOVE', fromUrl, new Error('connection refused'))
        : VolumeError.status('MOVE', fromUrl, status);
    }
    const blob = this.blobs.get(fromUrl);
    if (blob === undefined) throw VolumeError.status('MOVE', fromUrl, 404);
    if (this.urlsUnder(`${toUrl}/`).length > 0) throw VolumeError.status('MOVE', fromUrl, 409);
    this.blobs.delete(fromUrl);
    this.blobs.set(toUrl, blob);
  }

  async delete(url: string): Promise<boolean> {
    this.requests.push(`DELETE ${url}`);
    if (this.unreachable.has(volumeOf(url))) throw VolumeError.unreachable('DELETE', url, new Error('connection refused'));
    if (url.endsWith('/')) {
      const under = this.urlsUnder(url);
      for (const blobUrl of under) this.blobs.delete(blobUrl);
      return under.length > 0;
    }
    return this.blobs.delete(url);
  }

  async get(url: string): Promise<{ body: Readable; size: number | undefined }> {
    this.requests.push(`GET ${url}`);
    if (this.unreachable.has(volumeOf(url))) throw VolumeError.unreachable('GET', url, new Error('connection refused'));
    const blob = this.blobs.get(url);
    if (blob === undefined) throw VolumeError.status('GET', url, 404);
    return { body: Readable.from([blob]), size: blob.length };
  }

  async *list(url: string): AsyncIterable<VolumeEntry> {
    this.requests.push(`LIST ${url}`);
    if (this.unreachable.has(volumeOf(url))) throw VolumeError.unreachable('GET', url, new Error('connection refused'));
    const seen = new Set<string>();
    for (const [blobUrl, bytes] of [...this.blobs].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (!blobUrl.startsWith(url)) continue;
      const [name, ...rest] = blobUrl.slice(url.length).split('/');
      const decoded = decodeURIComponent(name);
      if (decoded.startsWith('.') || seen.has(decoded)) continue;
      seen.add(decoded);
      yield rest.length > 0
        ? { name: decoded, type: 'directory', mtime: 0 }
        : { name: decoded, type: 'file', size: bytes.length, mtime: 0 };
    }
  }

  async probe(volume: string): Promise<void> {
    this.requests.push(`PROBE ${volume}`);
    if (this.unreachable.has(volumeOf(volume))) throw VolumeError.unreachable('HEAD', volume, new Error('connection refused'));
  }

  /** The store as plain text, for whole-store assertions. */
  contents(): Record<string, string> {
    return Object.fromEntries([...this.blobs].map(([url, bytes]) => [url, bytes.toString()]));
  }

  /** Uploads still under a temporary dot-name. */
  tempUrls(): string[] {
    return [...this.blobs.keys()].filter((url) => url.includes('/.mkv-tmp/'));
  }

  private urlsUnder(directory: string): string[] {
    return [...this.blobs.keys()].filter((url) => url.startsWith(directory));
  }
}

function volumeOf(url: string): string {
  return new URL(url).origin;
}
