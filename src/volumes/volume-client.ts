import type { Readable } from 'node:stream';

export const VOLUME_CLIENT = Symbol('VOLUME_CLIENT');

/**
 * How the index talks to volume servers. The default speaks nginx WebDAV over
 * HTTP; a team can provide another (S3, a local disk) under VOLUME_CLIENT.
 * Every method rejects with VolumeError.
 */
export interface VolumeClient {
  /** Stores the body (a stream, or a small value already in memory) at `url`; resolves once the volume has all of it. */
  put(url: string, body: Readable | Buffer, options?: { length?: number; signal?: AbortSignal }): Promise<void>;
  /** Renames a blob within one volume, replacing what was at `toUrl`. */
  move(fromUrl: string, toUrl: string): Promise<void>;
  /** Removes a blob; resolves false when there was none. */
  delete(url: string): Promise<boolean>;
  /** Streams a blob; 404 when there is none. The caller must consume or destroy the body. */
  get(url: string, options?: { signal?: AbortSignal }): Promise<{ body: Readable; size: number | undefined }>;
  /** The entries of one directory (`url` ends with '/'), streamed; dot-names are never listed. */
  list(url: string): AsyncIterable<VolumeEntry>;
  /** Resolves when the volume answers within `timeoutMs` (any answer but a 5xx). */
  probe(volume: string, timeoutMs: number): Promise<void>;
}

export interface VolumeEntry {
  name: string;
  type: 'file' | 'directory';
  /** Bytes, for files. */
  size?: number;
  /** Milliseconds since the epoch. */
  mtime: number;
}

/** A volume request that failed: `status` is the volume's answer, absent when it could not be reached. */
export class VolumeError extends Error {
  constructor(
    readonly url: string,
    readonly status: number | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'VolumeError';
  }

  /** No answer at all (refused, reset, timed out), as opposed to an answer with an error status. */
  get unreachable(): boolean {
    return this.status === undefined;
  }

  static unreachable(method: string, url: string, cause: unknown): VolumeError {
    return new VolumeError(url, undefined, `${method} ${url}: ${(cause as Error)?.message ?? String(cause)}`);
  }

  static status(method: string, url: string, status: number): VolumeError {
    return new VolumeError(url, status, `${method} ${url}: volume answered ${status}`);
  }
}
