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
  /**
   * Resolves when the volume answers within `timeoutMs` (any answer but a
   * 5xx), counted from the call: connecting included. Never waits behind the
   * data requests; a volume that does not answer in time rejects `timedOut`.
   */
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

/** undici's names for a connection, an answer or a body that took too long. */
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/**
 * A volume request that failed: `status` is the volume's answer, absent when
 * it could not be reached; `timedOut` tells a volume too slow to answer (it
 * may be alive, under load) from one that refused or dropped the connection.
 */
export class VolumeError extends Error {
  constructor(
    readonly url: string,
    readonly status: number | undefined,
    message: string,
    readonly timedOut = false,
  ) {
    super(message);
    this.name = 'VolumeError';
  }

  /** No answer at all (refused, reset, timed out), as opposed to an answer with an error status. */
  get unreachable(): boolean {
    return this.status === undefined;
  }

  static unreachable(method: string, url: string, cause: unknown): VolumeError {
    const error = cause as { message?: string; name?: string; code?: string } | undefined;
    const timedOut = error?.name === 'TimeoutError' || TIMEOUT_CODES.has(error?.code ?? '');
    return new VolumeError(url, undefined, `${method} ${url}: ${error?.message ?? String(cause)}`, timedOut);
  }

  static status(method: string, url: string, status: number): VolumeError {
    return new VolumeError(url, status, `${method} ${url}: volume answered ${status}`);
  }
}
