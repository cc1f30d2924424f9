import { Inject, Injectable, Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { MkvConfig } from '../config/mkv-config';
import { MkvError, MkvErrorCode } from '../common/mkv-error';
import { Placement, PLACEMENT } from '../hashing/placement';
import { VolumeHealth } from '../health/volume-health.service';
import { BeganWrite, KEY_INDEX, KeyIndex } from '../index/key-index';
import { DIRECT_WRITE, type KeyRecord, type WriteIntent } from '../index/key-record';
import { VolumeError } from '../volumes/volume-client';
import { valueWritten, ValueWrittenEvent } from '../metrics/channels';
import { KeyLocks } from '../replicas/key-locks';
import { ReplicaFiles } from '../replicas/replica-files.service';
import { isSmallValue, ReplicaUpload, Upload, volumeWriteFailed, wholeUpload } from './replica-upload';

export interface WriteResult {
  /** False when the PUT replaced a live value. */
  created: boolean;
}

/**
 * The write path, top to bottom, for an overwrite (the key has a record, live
 * or unlinked) and for a large value:
 *  1. choose the key's R volumes (placement), refusing early what cannot be written;
 *  2. upload the body once, fanned out to them under a temporary name (ReplicaUpload);
 *  3. under the key's lock, begin: record the new value and an intent to
 *     rename, in one index transaction;
 *  4. move every upload into place (WebDAV MOVE);
 *  5. finish: drop the intent; or, when a move failed, roll back.
 * A failure before 4 deletes the uploads and leaves the old value untouched;
 * a crash after 3 is finished from the intent when the server next starts.
 *
 * A small value (read whole) for a key with no record at all has no old
 * value a reader could see, so it skips the temporary name and the MOVEs
 * (writeNew): once the value is read, under the key's lock from start to
 * end, an intent is recorded, the value sent to the key's own paths (nginx
 * renames a PUT into place only once complete), and the record stored with
 * the intent dropped in one transaction. A failure deletes the blobs; a
 * crash leaves the intent, from which the next start deletes them. A large
 * value keeps the temporary name: one MOVE is nothing next to its bytes, and
 * a leftover directory at its path could not be cleared and the body sent
 * again.
 */
@Injectable()
export class KeyWriter {
  private readonly logger = new Logger(KeyWriter.name);
  /** The index can record a direct write (KeyIndex.beginDirectWrite and commitDirectWrite are optional). */
  private readonly directWrites: boolean;

  constructor(
    private readonly config: MkvConfig,
    @Inject(PLACEMENT) private readonly placement: Placement,
    private readonly locks: KeyLocks,
    @Inject(KEY_INDEX) private readonly index: KeyIndex,
    private readonly uploads: ReplicaUpload,
    private readonly files: ReplicaFiles,
    private readonly health: VolumeHealth,
  ) {
    this.directWrites = typeof index.beginDirectWrite === 'function' && typeof index.commitDirectWrite === 'function';
  }

  /**
   * `sendContinue` is given for a client that waits for `100 Continue` before
   * it sends the body: it is called once the write can go ahead (the key free
   * of conflicts, its volumes not known down), right before the body is read.
   */
  async put(key: string, body: Readable, declaredLength: number | undefined, sendContinue?: () => void): Promise<WriteResult> {
    if (declaredLength === 0) throw emptyValue();
    const targets = this.chooseVolumes(key);
    if (!this.directWrites || !isSmallValue(declaredLength)) return this.overwrite(key, targets, body, declaredLength, sendContinue);
    if (sendContinue !== undefined) {
      // Checked again when the write is recorded; a client waiting for
      // `100 Continue` learns of a conflict before it sends its body.
      const conflict = await this.index.findConflict(key);
      if (conflict !== undefined) throw keyConflict(key, conflict);
      sendContinue();
    }
    // Read before the lock is taken: a slow client must not hold up the key's
    // other changes. New or not is decided under the lock, with one read; an
    // overwrite then leaves it for its upload and takes it again to commit.
    const value = await this.uploads.readWhole(body);
    const written = await this.locks.run(key, async () =>
      (await this.index.get(key)) === undefined ? this.writeNew(key, targets, value) : undefined,
    );
    return written ?? this.overwrite(key, targets, value, value.length, undefined);
  }

  /** Steps 2 to 5: the upload under a temporary name outside the lock, the rest under it. */
  private async overwrite(
    key: string,
    targets: string[],
    body: Readable | Buffer,
    declaredLength: number | undefined,
    sendContinue: (() => void) | undefined,
  ): Promise<WriteResult> {
    if (!isSmallValue(declaredLength) || sendContinue !== undefined) {
      // Checked again, atomically, when the write begins; this early check
      // refuses a conflicting key before a single byte of a large value reaches
      // a volume, or before a client waiting for `100 Continue` sends one. A
      // small value is cheaper to upload and discard on a conflict (a client
      // error) than to check twice on every write.
      const conflict = await this.index.findConflict(key);
      if (conflict !== undefined) throw keyConflict(key, conflict);
    }

    sendContinue?.();
    const tempPath = this.files.newTempPath();
    let upload: Upload;
    try {
      upload = await this.uploads.upload(body, { volumes: targets, urls: targets.map((volume) => volume + tempPath) }, declaredLength);
      if (upload.size === 0) throw emptyValue();
    } catch (error) {
      // A small body that broke off reached no volume; anything else may have left uploads.
      if (!(isSmallValue(declaredLength) && isBodyError(error))) await this.files.discard(targets, tempPath);
      throw error;
    }
    return this.locks.run(key, () => this.commit(key, targets, tempPath, upload));
  }

  /**
   * A small value for a key with no record (the caller holds the key's lock
   * and checked): sent straight to the key's paths. The intent is committed
   * before the first byte is sent, and the lock held until the record is, so
   * no DELETE, UNLINK, pending-delete retry, rebalance or other PUT of the
   * key sees blobs that are in place but not yet recorded. Resolves with
   * undefined when every volume that failed answered that something stands
   * at the key's path (a directory, a file where one is needed): the blobs
   * are removed and the caller writes the value the overwrite way, whose
   * rename clears what deleted keys left there and tells a real conflict
   * from such a leftover.
   */
  private async writeNew(key: string, targets: string[], value: Buffer): Promise<WriteResult | undefined> {
    const now = Date.now();
    const intent: WriteIntent = { id: randomUUID(), key, tempPath: DIRECT_WRITE, volumes: targets, createdAt: now };
    await this.index.beginDirectWrite!(intent);

    const urls = targets.map((volume) => this.placement.blobUrl(key, volume));
    const failures = await this.uploads.sendWhole(value, { volumes: targets, urls });
    if (failures.length > 0) {
      for (const failure of failures) this.logger.warn(`upload failed: ${(failure as Error).message}`);
      await this.undoDirectWrite(intent);
      if (failures.every(mayBeInTheWay)) return undefined;
      throw volumeWriteFailed();
    }

    const record: KeyRecord = { key, volumes: targets, ...wholeUpload(value), state: 'live', createdAt: now, updatedAt: now };
    let conflict: string | undefined;
    try {
      conflict = await this.index.commitDirectWrite!(record, intent.id);
    } catch (error) {
      await this.undoDirectWrite(intent);
      throw error;
    }
    if (conflict !== undefined) {
      await this.undoDirectWrite(intent);
      throw keyConflict(key, conflict);
    }
    if (valueWritten.hasSubscribers) valueWritten.publish({ key, size: record.size, replicas: targets.length } satisfies ValueWrittenEvent);
    return { created: true };
  }

  /**
   * A direct write that failed: its blobs are deleted from every target (a
   * failed PUT leaves nothing or a whole file at the key's path; nginx
   * refuses to DELETE a directory without its trailing '/'), then the intent
   * dropped, noting for a retry the blobs a volume could not delete. If even
   * that cannot be recorded, the intent stays and the next start cleans up.
   */
  private async undoDirectWrite(intent: WriteIntent): Promise<void> {
    const deleted = await this.files.deleteBlobs(intent.key, intent.volumes);
    await this.index.abortWrite(intent.id, intent.key, undefined, deleted ? [] : intent.volumes).catch((error) => {
      this.logger.error(`could not clear the failed write of ${intent.key}: ${(error as Error).message}; the next start will`);
    });
  }

  /** The key's R volumes, none known down: nothing is written anywhere otherwise (fail fast rather than wait for a timeout). */
  private chooseVolumes(key: string): string[] {
    const targets = this.placement.replicasFor(key);
    if (targets.length < this.config.replicas) {
      throw new MkvError(
        MkvErrorCode.NotEnoughVolumes,
        `need ${this.config.replicas} volumes but only ${this.config.volumes.length} available`,
      );
    }
    const down = targets.find((volume) => this.health.isDown(volume));
    if (down !== undefined) throw new MkvError(MkvErrorCode.VolumeDown, `volume ${down} is down`);
    return targets;
  }

  /** Steps 3 to 5, under the key's lock. */
  private async commit(key: string, targets: string[], tempPath: string, upload: Upload): Promise<WriteResult> {
    const now = Date.now();
    const record: KeyRecord = { key, volumes: targets, size: upload.size, md5: upload.md5, state: 'live', createdAt: now, updatedAt: now };
    const intent: WriteIntent = { id: randomUUID(), key, tempPath, volumes: targets, createdAt: now };

    const previous = await this.begin(record, intent);
    record.createdAt = previous?.createdAt ?? now; // as the index keeps it
    const { moved, failures } = await this.moveIntoPlace(key, targets, tempPath);
    if (failures.length === 0) return this.finish(record, intent, previous);

    await this.rollBack(record, moved, intent, previous);
    throw await this.moveFailure(key, failures);
  }

  /**
   * One index transaction: the new record and the intent to rename. Returns
   * the record it replaced. On a failure or a conflict nothing is renamed yet:
   * the uploads are discarded and the old value is untouched.
   */
  private async begin(record: KeyRecord, intent: WriteIntent): Promise<KeyRecord | undefined> {
    let began: BeganWrite;
    try {
      began = await this.index.beginWrite(record, intent);
    } catch (error) {
      await this.files.discard(record.volumes, intent.tempPath);
      throw error;
    }
    if (began.conflict !== undefined) {
      await this.files.discard(record.volumes, intent.tempPath);
      throw keyConflict(record.key, began.conflict);
    }
    return began.previous;
  }

  /** Renames the upload into place on every volume: where it was moved, and why it failed elsewhere. */
  private async moveIntoPlace(key: string, volumes: string[], tempPath: string): Promise<{ moved: string[]; failures: unknown[] }> {
    const outcomes = await Promise.allSettled(volumes.map((volume) => this.files.moveIntoPlace(key, volume, tempPath)));
    const moved = volumes.filter((_, i) => outcomes[i].status === 'fulfilled');
    const failures = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
    for (const failure of failures) this.logger.warn(`rename into place failed for ${key}: ${(failure as Error).message}`);
    return { moved, failures };
  }

  /** Every upload is in place: the intent is dropped and the old copies the new volumes do not cover are deleted. */
  private async finish(record: KeyRecord, intent: WriteIntent, previous: KeyRecord | undefined): Promise<WriteResult> {
    await this.index.finishWrite(intent.id).catch((error) => {
      // The record is already right; only the intent stays, and replaying it is harmless.
      this.logger.warn(`could not clear write intent for ${record.key}: ${(error as Error).message}`);
    });
    await this.files.deleteBlobs(record.key, (previous?.volumes ?? []).filter((v) => !record.volumes.includes(v)));
    if (valueWritten.hasSubscribers) valueWritten.publish({ key: record.key, size: record.size, replicas: record.volumes.length } satisfies ValueWrittenEvent);
    return { created: previous?.state !== 'live' };
  }

  /** What the client is told when a rename failed (after the roll-back): 409 when a path on a volume is in the way, else 502. */
  private async moveFailure(key: string, failures: unknown[]): Promise<MkvError> {
    if (!failures.every(isPathConflict)) return volumeWriteFailed();
    const existing = await this.index.findConflict(key).catch(() => undefined);
    return existing !== undefined
      ? keyConflict(key, existing)
      : new MkvError(MkvErrorCode.KeyConflict, `key ${key} conflicts with an existing path on a volume`);
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
   * already gone was renamed before the crash). A direct write's intent is
   * cleared instead. Runs before serving.
   */
  async recoverPendingWrites(): Promise<void> {
    for (const intent of await this.index.pendingWrites()) {
      if (intent.tempPath === DIRECT_WRITE) {
        await this.recoverDirectWrite(intent);
        continue;
      }
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

  /**
   * A direct write the crash cut short was never acknowledged: with no record
   * for the key its blobs are deleted (or noted for a retry). A record means
   * the key was written since (its blobs are that write's): only the intent goes.
   */
  private async recoverDirectWrite(intent: WriteIntent): Promise<void> {
    if ((await this.index.get(intent.key)) !== undefined) {
      await this.index.finishWrite(intent.id);
      return;
    }
    await this.undoDirectWrite(intent);
    this.logger.warn(`removed the unfinished write of new key ${intent.key}`);
  }
}

function isPathConflict(error: unknown): boolean {
  // 409: a directory stands at the key's path; 404 (with our upload present):
  // a file stands where the key needs a directory.
  return error instanceof VolumeError && (error.status === 409 || error.status === 404);
}

/**
 * A volume's answer to a PUT at a key's path when something stands there:
 * 409 for a directory, 500 for a file where the key needs a directory
 * (nginx cannot tell that from other failures by its status).
 */
function mayBeInTheWay(error: unknown): boolean {
  return error instanceof VolumeError && (error.status === 409 || error.status === 500);
}

/** The client's body broke off or timed out (as ReplicaUpload reports it). */
function isBodyError(error: unknown): boolean {
  return error instanceof MkvError && (error.code === MkvErrorCode.InvalidRequest || error.code === MkvErrorCode.BodyTimeout);
}

function keyConflict(key: string, existing: string): MkvError {
  return new MkvError(MkvErrorCode.KeyConflict, `key ${key} conflicts with existing key ${existing}`);
}

function emptyValue(): MkvError {
  return new MkvError(MkvErrorCode.EmptyValue, 'empty value');
}
