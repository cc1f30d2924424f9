import { Inject, Injectable, Logger } from '@nestjs/common';
import { hash } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import { MkvError, MkvErrorCode } from '../common/mkv-error';
import { MkvConfig } from '../config/mkv-config';
import { VolumeHealth } from '../health/volume-health.service';
import { VOLUME_CLIENT, VolumeClient, VolumeError } from '../volumes/volume-client';
import { Md5Worker } from './md5-worker';
import { BodyTimeoutError, readBody } from './request-body';

/**
 * A value whose Content-Length is at most this is read whole before it goes
 * to the volumes: one Buffer sent to each (the request line, headers and body
 * in one write), instead of a stream per volume paced by the slowest. Memory
 * stays bounded: this many bytes per request in flight at the most.
 */
export const SMALL_VALUE_BYTES = 64 * 1024;

/** True for a value read whole before it is sent (see SMALL_VALUE_BYTES); a body of unknown length is streamed. */
export function isSmallValue(declaredLength: number | undefined): boolean {
  return declaredLength !== undefined && declaredLength <= SMALL_VALUE_BYTES;
}

/**
 * Where a value goes: `urls[i]` on `volumes[i]`. The caller chooses it (a
 * temporary name, or the key's own path for a new key) and removes what a
 * failed upload left there: only it knows what those paths mean.
 */
export interface UploadDestination {
  volumes: string[];
  urls: string[];
}

/** A value uploaded to every URL of its destination. */
export interface Upload {
  size: number;
  md5: string;
}

/**
 * The request body to the R volumes, at the destination's URL on each: the
 * body is read once, fanned out at the pace of the slowest volume, and its
 * size and MD5 computed on the way (a small value is read whole first). A
 * body that stops arriving fails after the configured body timeout. On any
 * failure the error the client is told is thrown; what reached the volumes
 * is the caller's to remove (nginx renames a PUT into place only once its
 * body is complete, so a failed upload leaves at most whole files).
 */
@Injectable()
export class ReplicaUpload {
  private readonly logger = new Logger(ReplicaUpload.name);

  constructor(
    private readonly config: MkvConfig,
    @Inject(VOLUME_CLIENT) private readonly volumes: VolumeClient,
    private readonly health: VolumeHealth,
    private readonly md5Worker: Md5Worker,
  ) {}

  /** `body` is streamed, or read whole first when it is small (or already a Buffer). */
  async upload(body: Readable | Buffer, destination: UploadDestination, declaredLength: number | undefined): Promise<Upload> {
    if (!Buffer.isBuffer(body) && !isSmallValue(declaredLength)) return this.stream(body, destination, declaredLength);
    // A small value: read whole, then sent to every volume at once. A body
    // that breaks off fails before anything reaches a volume.
    const value = Buffer.isBuffer(body) ? body : await this.readWhole(body);
    const [failure] = await this.sendWhole(value, destination);
    if (failure !== undefined) this.failed(failure);
    return wholeUpload(value);
  }

  /**
   * The body streamed to every target at once, never held whole. Its MD5 is
   * computed on a worker thread (a copy of each chunk), so the event loop
   * only moves bytes; the worker's queue counts as one more slow sink.
   */
  private async stream(body: Readable, { volumes: targets, urls }: UploadDestination, length: number | undefined): Promise<Upload> {
    const md5 = this.md5Worker.begin();
    let digest = '';
    let size = 0;
    const abort = new AbortController();
    const sinks = targets.map(() => new PassThrough());
    let failure: unknown;
    const fail = (error: unknown) => {
      failure ??= error;
      abort.abort();
      for (const sink of sinks) sink.destroy();
    };

    const pump = async () => {
      await readBody(body, { idleSeconds: this.config.bodyTimeout, signal: abort.signal }, (chunk) => {
        size += chunk.length;
        const hashing = md5.update(chunk);
        // Move at the pace of the slowest volume: memory stays at a few chunks.
        const drains: Promise<unknown>[] = sinks.filter((sink) => !sink.write(chunk)).map((sink) => once(sink, 'drain', { signal: abort.signal }));
        if (hashing !== undefined) drains.push(hashing);
        return drains.length > 0 ? Promise.all(drains) : undefined;
      });
      for (const sink of sinks) sink.end();
      // Hashed while the volumes take in the last bytes.
      digest = await md5.digest();
    };
    const puts = targets.map((volume, i) => this.putOn(volume, urls[i], sinks[i], { length, signal: abort.signal }));
    await Promise.allSettled([pump(), ...puts].map((step) => step.catch(fail)));

    if (failure !== undefined) {
      md5.abandon();
      this.failed(failure);
    }
    return { size, md5: digest };
  }

  /** A small body, read whole (see SMALL_VALUE_BYTES); throws what the client is told when it breaks off or times out. */
  async readWhole(body: Readable): Promise<Buffer> {
    const chunks: Buffer[] = [];
    try {
      await readBody(body, { idleSeconds: this.config.bodyTimeout }, (chunk) => void chunks.push(chunk));
    } catch (error) {
      throw bodyNotReceived(error);
    }
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  }

  /** A value held whole, sent to every URL of the destination at once: the failure of each volume that failed (none: stored everywhere). */
  async sendWhole(value: Buffer, { volumes, urls }: UploadDestination): Promise<unknown[]> {
    const outcomes = await Promise.allSettled(volumes.map((volume, i) => this.putOn(volume, urls[i], value, { length: value.length })));
    return outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason as unknown] : []));
  }

  /** One volume's upload; a volume that cannot be reached is reported to the health checks (unless we aborted it). */
  private async putOn(volume: string, url: string, body: Readable | Buffer, options: { length?: number; signal?: AbortSignal }): Promise<void> {
    try {
      await this.volumes.put(url, body, options);
    } catch (error) {
      if (error instanceof VolumeError && error.unreachable && !options.signal?.aborted) this.health.reportUnreachable(volume, error.message);
      throw error;
    }
  }

  /** Throws what the client is told. */
  private failed(failure: unknown): never {
    if (failure instanceof VolumeError) {
      this.logger.warn(`upload failed: ${failure.message}`);
      throw volumeWriteFailed();
    }
    if (failure instanceof MkvError) throw failure; // the digest's
    throw bodyNotReceived(failure);
  }
}

/** The size and MD5 of a value held whole. */
export function wholeUpload(value: Buffer): Upload {
  return { size: value.length, md5: hash('md5', value, 'hex') };
}

/** 502: a volume failed a write (an upload or a rename). */
export function volumeWriteFailed(): MkvError {
  return new MkvError(MkvErrorCode.VolumeWriteFailed, 'not all volume writes succeeded');
}

function bodyNotReceived(cause: unknown): MkvError {
  if (cause instanceof BodyTimeoutError) return new MkvError(MkvErrorCode.BodyTimeout, `request body timed out: ${cause.message}`);
  // The client went away or sent a broken body; it will not read an answer.
  return new MkvError(MkvErrorCode.InvalidRequest, `request body not received: ${(cause as Error)?.message}`);
}
