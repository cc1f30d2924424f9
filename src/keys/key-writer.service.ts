import { Inject, Injectable, Logger } from '@nestjs/common';
import { createHash, hash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import { MkvConfig } from '../config/mkv-config';
import { MkvError, MkvErrorCode } from '../common/mkv-error';
import { Placement, PLACEMENT } from '../hashing/placement';
import { VolumeHealth } from '../health/volume-health.service';
import { BeganWrite, KEY_INDEX, KeyIndex } from '../index/key-index';
import type { KeyRecord, WriteIntent } from '../index/key-record';
import { VOLUME_CLIENT, VolumeClient, VolumeError } from '../volumes/volume-client';
import { valueWritten, ValueWrittenEvent } from '../metrics/channels';
import { KeyLocks } from '../replicas/key-locks';
import { ReplicaFiles } from '../replicas/replica-files.service';
import { BodyTimeoutError, readBody } from './request-body';

export interface WriteResult {
  /** False when the PUT replaced a live value. */
  created: boolean;
}

/**
 * A value whose Content-Length is at most this is read whole before it goes
 * to the volumes: one Buffer sent to each (the request line, headers and body
 * in one write), instead of a stream per volume paced by the slowest. Memory
 * stays bounded: this many bytes per request in flight at the most.
 */
export const SMALL_VALUE_BYTES = 64 * 1024;

interface Upload {
  tempPath: string;
  size: number;
  md5: string;
}

/**
 * The write path, top to bottom:
 *  1. stream the body once, fanned out to the R target volumes under a
 *     temporary name, computing size and MD5 on the way (never buffered whole,
 *     but for a value of at most SMALL_VALUE_BYTES, read first and then sent);
 *  2. under the key's lock, record the new value and an intent to rename, in
 *     one index transaction;
 *  3. rename (WebDAV MOVE) every upload into place;
 *  4. drop the intent.
 * A failure before 3 deletes the uploads and leaves the old value untouched;
 * a crash after 2 is finished from the intent when the server next starts.
 */
@Injectable()
export class KeyWriter {
  private readonly logger = new Logger(KeyWriter.name);

  constructor(
    private readonly config: MkvConfig,
    @Inject(PLACEMENT) private readonly placement: Placement,
    private readonly locks: KeyLocks,
    @Inject(KEY_INDEX) private readonly index: KeyIndex,
    @Inject(VOLUME_CLIENT) private readonly volumes: VolumeClient,
    private readonly files: ReplicaFiles,
    private readonly health: VolumeHealth,
  ) {}

  /**
   * `sendContinue` is given for a client that waits for `100 Continue` before
   * it sends the body: it is called once the write can go ahead (the key free
   * of conflicts, its volumes not known down), right before the body is read.
   */
  async put(key: string, body: Readable, declaredLength: number | undefined, sendContinue?: () => void): Promise<WriteResult> {
    if (declaredLength === 0) throw emptyValue();
    const targets = this.placement.replicasFor(key);
    if (targets.length < this.config.replicas) {
      throw new MkvError(
        MkvErrorCode.NotEnoughVolumes,
        `need ${this.config.replicas} volumes but only ${this.config.volumes.length} available`,
      );
    }
    // Fail fast instead of waiting for a timeout; nothing is written anywhere.
    const down = targets.find((volume) => this.health.isDown(volume));
    if (down !== undefined) throw new MkvError(MkvErrorCode.VolumeDown, `volume ${down} is down`);
    const small = declaredLength !== undefined && declaredLength <= SMALL_VALUE_BYTES;
    if (!small || sendContinue !== undefined) {
      // Checked again, atomically, when the record is written; this early check
      // refuses a conflicting key before a single byte of a large value reaches
      // a volume, or before a client waiting for `100 Continue` sends one. A
      // small value is cheaper to upload and discard on a conflict (a client
      // error) than to check twice on every write.
      const conflict = await this.index.findConflict(key);
      if (conflict !== undefined) throw keyConflict(key, conflict);
    }

    sendContinue?.();
    const upload = small ? await this.uploadSmall(body, targets) : await this.upload(body, targets, declaredLength);
    if (upload.size === 0) {
      await this.files.discard(targets, upload.tempPath);
      throw emptyValue();
    }
    return this.locks.run(key, () => this.commit(key, targets, upload));
  }

  private async upload(body: Readable, targets: string[], length: number | undefined): Promise<Upload> {
    const tempPath = this.files.newTempPath();
    const md5 = createHash('md5');
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
        md5.update(chunk);
        size += chunk.length;
        // Move at the pace of the slowest volume: memory stays at a few chunks.
        const drains = sinks.filter((sink) => !sink.write(chunk)).map((sink) => once(sink, 'drain', { signal: abort.signal }));
        return drains.length > 0 ? Promise.all(drains) : undefined;
      });
      for (const sink of sinks) sink.end();
    };
    const puts = targets.map((volume, i) => this.putOn(volume, tempPath, sinks[i], { length, signal: abort.signal }));
    await Promise.allSettled([pump(), ...puts].map((step) => step.catch(fail)));

    if (failure !== undefined) await this.uploadFailed(targets, tempPath, failure);
    return { tempPath, size, md5: md5.digest('hex') };
  }

  /**
   * A small value: read whole, then sent to every volume at once. A body that
   * breaks off fails before anything reaches a volume.
   */
  private async uploadSmall(body: Readable, targets: string[]): Promise<Upload> {
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
    if (failed !== undefined) await this.uploadFailed(targets, tempPath, failed.reason);
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
  private async uploadFailed(targets: string[], tempPath: string, failure: unknown): Promise<never> {
    await this.files.discard(targets, tempPath);
    if (failure instanceof VolumeError) {
      this.logger.warn(`upload failed: ${failure.message}`);
      throw volumeWriteFailed();
    }
    throw bodyNotReceived(failure);
  }

  private async commit(key: string, targets: string[], upload: Upload): Promise<WriteResult> {
    const now = Date.now();
    const record: KeyRecord = { key, volumes: targets, size: upload.size, md5: upload.md5, state: 'live', createdAt: now, updatedAt: now };
    const intent: WriteIntent = { id: randomUUID(), key, tempPath: upload.tempPath, volumes: targets, createdAt: now };

    let began: BeganWrite;
    try {
      began = await this.index.beginWrite(record, intent);
    } catch (error) {
      await this.files.discard(targets, upload.tempPath); // nothing renamed yet: the old value is untouched
      throw error;
    }
    if (began.conflict !== undefined) {
      await this.files.discard(targets, upload.tempPath);
      throw keyConflict(key, began.conflict);
    }
    const { previous } = began;
    record.createdAt = previous?.createdAt ?? now; // as the index keeps it

    const outcomes = await Promise.allSettled(targets.map((volume) => this.files.moveIntoPlace(key, volume, upload.tempPath)));
    const moved = targets.filter((_, i) => outcomes[i].status === 'fulfilled');
    const failures = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));

    if (failures.length === 0) {
      await this.index.finishWrite(intent.id).catch((error) => {
        // The record is already right; only the intent stays, and replaying it is harmless.
        this.logger.warn(`could not clear write intent for ${key}: ${(error as Error).message}`);
      });
      await this.files.deleteBlobs(key, (previous?.volumes ?? []).filter((v) => !targets.includes(v)));
      if (valueWritten.hasSubscribers) valueWritten.publish({ key, size: upload.size, replicas: targets.length } satisfies ValueWrittenEvent);
      return { created: previous?.state !== 'live' };
    }

    for (const failure of failures) this.logger.warn(`rename into place failed for ${key}: ${(failure as Error).message}`);
    await this.rollBack(record, moved, intent, previous);
    if (failures.every(isPathConflict)) {
      const existing = await this.index.findConflict(key).catch(() => undefined);
      throw existing !== undefined
        ? keyConflict(key, existing)
        : new MkvError(MkvErrorCode.KeyConflict, `key ${key} conflicts with an existing path on a volume`);
    }
    throw volumeWriteFailed();
  }

  /**
   * Undo what a partly failed rename left. A new key loses every copy; an
   * overwrite whose renames replaced none of its old copies (all failed, or
   * succeeded only on volumes the old value was not on) keeps its old value
   * everywhere. An overwrite renamed over some old copies cannot get their
   * bytes back, so the index then lists exactly the replicas holding the new
   * value, and the stale old copies elsewhere are deleted: replicas and index
   * still agree.
   */
  private async rollBack(
    record: KeyRecord,
    moved: string[],
    intent: WriteIntent,
    previous: KeyRecord | undefined,
  ): Promise<void> {
    const notMoved = record.volumes.filter((v) => !moved.includes(v));
    if (previous === undefined || !previous.volumes.some((v) => moved.includes(v))) {
      // If the index cannot be put back, this throws and keeps the uploads:
      // the intent lets the next start finish the write, consistent too.
      await this.index.abortWrite(intent.id, record.key, previous);
      await this.files.deleteBlobs(record.key, moved);
      await this.files.discard(notMoved, intent.tempPath);
      return;
    }
    await this.index.finishWrite(intent.id, { ...record, volumes: moved });
    const stale = [...notMoved, ...previous.volumes.filter((v) => !record.volumes.includes(v))];
    await this.files.deleteBlobs(record.key, stale);
    await this.files.discard(notMoved, intent.tempPath);
  }

  /**
   * Finishes the writes a crash interrupted between recording and renaming:
   * every upload still under its temporary name is renamed into place (one
   * already gone was renamed before the crash). Runs before serving.
   */
  async recoverPendingWrites(): Promise<void> {
    for (const intent of await this.index.pendingWrites()) {
      const outcomes = await Promise.allSettled(
        intent.volumes.map(async (volume) => {
          try {
            await this.files.moveIntoPlace(intent.key, volume, intent.tempPath);
          } catch (error) {
            // The upload is gone: it was renamed before the crash.
            if (!(error instanceof VolumeError) || error.status !== 404) throw error;
          }
        }),
      );
      const failed = outcomes.filter((o) => o.status === 'rejected');
      if (failed.length > 0) {
        this.logger.error(
          `write of ${intent.key} still unfinished: ${(failed[0] as PromiseRejectedResult).reason?.message}; will retry at next start`,
        );
        continue;
      }
      const record = await this.index.get(intent.key);
      // No record: the key was deleted after a write whose intent could not be cleared.
      if (record) await this.index.finishWrite(intent.id, record);
      else await this.index.abortWrite(intent.id, intent.key, undefined);
      this.logger.warn(`finished the interrupted write of ${intent.key}`);
    }
  }
}

function isPathConflict(error: unknown): boolean {
  // 409: a directory stands at the key's path; 404 (with our upload present):
  // a file stands where the key needs a directory.
  return error instanceof VolumeError && (error.status === 409 || error.status === 404);
}

function keyConflict(key: string, existing: string): MkvError {
  return new MkvError(MkvErrorCode.KeyConflict, `key ${key} conflicts with existing key ${existing}`);
}

function emptyValue(): MkvError {
  return new MkvError(MkvErrorCode.EmptyValue, 'empty value');
}

function bodyNotReceived(cause: unknown): MkvError {
  if (cause instanceof BodyTimeoutError) return new MkvError(MkvErrorCode.BodyTimeout, `request body timed out: ${cause.message}`);
  // The client went away or sent a broken body; it will not read an answer.
  return new MkvError(MkvErrorCode.InvalidRequest, `request body not received: ${(cause as Error)?.message}`);
}

function volumeWriteFailed(): MkvError {
  return new MkvError(MkvErrorCode.VolumeWriteFailed, 'not all volume writes succeeded');
}
