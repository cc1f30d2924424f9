import { Inject, Injectable, Logger } from '@nestjs/common';
import { hash } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import { MkvError, MkvErrorCode } from '../common/mkv-error';
import { MkvConfig } from '../config/mkv-config';
import { VolumeHealth } from '../health/volume-health.service';
import { ReplicaFiles } from '../replicas/replica-files.service';
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

/** A value uploaded to each of its volumes under the same temporary name. */
export interface Upload {
  tempPath: string;
  size: number;
  md5: string;
}

/**
 * The request body to the R volumes, under a new temporary name on each: the
 * body is read once, fanned out at the pace of the slowest volume, and its
 * size and MD5 computed on the way (a small value is read whole first). A
 * body that stops arriving fails after the configured body timeout. On any
 * failure the uploads are discarded and the error the client is told thrown.
 */
@Injectable()
export class ReplicaUpload {
  private readonly logger = new Logger(ReplicaUpload.name);

  constructor(
    private readonly config: MkvConfig,
    @Inject(VOLUME_CLIENT) private readonly volumes: VolumeClient,
    private readonly files: ReplicaFiles,
    private readonly health: VolumeHealth,
    private readonly md5Worker: Md5Worker,
  ) {}

  upload(body: Readable, targets: string[], declaredLength: number | undefined): Promise<Upload> {
    return isSmallValue(declaredLength) ? this.uploadWhole(body, targets) : this.stream(body, targets, declaredLength);
  }

  /**
   * The body streamed to every target at once, never held whole. Its MD5 is
   * computed on a worker thread (a copy of each chunk), so the event loop
   * only moves bytes; the worker's queue counts as one more slow sink.
   */
  private async stream(body: Readable, targets: string[], length: number | undefined): Promise<Upload> {
    const tempPath = this.files.newTempPath();
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
    const puts = targets.map((volume, i) => this.putOn(volume, tempPath, sinks[i], { length, signal: abort.signal }));
    await Promise.allSettled([pump(), ...puts].map((step) => step.catch(fail)));

    if (failure !== undefined) {
      md5.abandon();
      await this.failed(targets, tempPath, failure);
    }
    return { tempPath, size, md5: digest };
  }

  /**
   * A small value: read whole, then sent to every volume at once. A body that
   * breaks off fails before anything reaches a volume.
   */
  private async uploadWhole(body: Readable, targets: string[]): Promise<Upload> {
    const chunks: Buffer[] = [];
    try {
      await readBody(body, { idleSeconds: this.config.bodyTimeout }, (chunk) => void chunks.push(chunk));
    } catch (error) {
      throw bodyNotReceived(error);
    }
    const value = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const tempPath = this.files.newTempPath();
    const outcomes = await Promise.allSettled(targets.map((volume) => this.putOn(volume, tempPath, value, { length: value.length })));
    const failed = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failed !== undefined) await this.failed(targets, tempPath, failed.reason);
    return { tempPath, size: value.length, md5: hash('md5', value, 'hex') };
  }

  /** One volume's upload; a volume that cannot be reached is reported to the health checks (unless we aborted it). */
  private async putOn(volume: string, tempPath: string, body: Readable | Buffer, options: { length?: number; signal?: AbortSignal }): Promise<void> {
    try {
      await this.volumes.put(volume + tempPath, body, options);
    } catch (error) {
      if (error instanceof VolumeError && error.unreachable && !options.signal?.aborted) this.health.reportUnreachable(volume, error.message);
      throw error;
    }
  }

  /** Removes the uploads and throws what the client is told. */
  private async failed(targets: string[], tempPath: string, failure: unknown): Promise<never> {
    await this.files.discard(targets, tempPath);
    if (failure instanceof VolumeError) {
      this.logger.warn(`upload failed: ${failure.message}`);
      throw volumeWriteFailed();
    }
    if (failure instanceof MkvError) throw failure; // the digest's
    throw bodyNotReceived(failure);
  }
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
