import { Inject, Injectable } from '@nestjs/common';
import { MkvConfig } from '../config/mkv-config';
import { encodeKeyPath } from '../common/key-path';
import { MkvError, MkvErrorCode } from '../common/mkv-error';
import { Placement, PLACEMENT } from '../hashing/placement';
import { VolumeHealth } from '../health/volume-health.service';
import { KEY_INDEX, KeyIndex } from '../index/key-index';
import type { KeyRecord, KeyState } from '../index/key-record';
import { KeyLocks } from '../replicas/key-locks';
import { ReplicaFiles } from '../replicas/replica-files.service';

export interface Location {
  url: string;
  /** Absent when the answer is the fallback server's. */
  record?: KeyRecord;
}

export interface ListPage {
  keys: string[];
  /** The `start` of the following page, or '' at the end. */
  next: string;
}

/** Reads, deletes, unlinks and listings: everything about keys but the write path. */
@Injectable()
export class KeysService {
  private deleteRetry: Promise<void> | undefined;
  private retryAgain = false;

  constructor(
    private readonly config: MkvConfig,
    @Inject(PLACEMENT) private readonly placement: Placement,
    private readonly locks: KeyLocks,
    @Inject(KEY_INDEX) private readonly index: KeyIndex,
    private readonly files: ReplicaFiles,
    private readonly health: VolumeHealth,
  ) {}

  /** Where a GET should go: the first healthy replica, or the fallback server for an unknown key. */
  async locate(key: string): Promise<Location> {
    const record = await this.index.get(key);
    if (record === undefined || record.state !== 'live') {
      if (this.config.fallback) return { url: `${this.config.fallback}/${encodeKeyPath(key)}` };
      throw MkvError.notFound();
    }
    if (record.volumes.length === 0) {
      throw new MkvError(MkvErrorCode.CorruptRecord, `corrupt record for key ${key}: no volumes`);
    }
    // Health comes from the background probes: no request to a volume here.
    const volume = this.health.readableReplica(record.volumes);
    if (volume === undefined) throw new MkvError(MkvErrorCode.NoHealthyVolume, `no healthy volume for key ${key}`);
    return { url: this.placement.blobUrl(key, volume), record };
  }

  /** The live record, for HEAD. */
  async stat(key: string): Promise<KeyRecord> {
    const record = await this.index.get(key);
    if (record === undefined || record.state !== 'live') throw MkvError.notFound();
    return record;
  }

  /**
   * Drops the key from the index first, so no reader is sent to a blob that
   * is going away, then deletes the blobs best-effort. The blob deletes stay
   * inside the lock: a PUT right after must not have its new blob deleted.
   * Until they are done the index notes them, so neither a rebuild nor a
   * crash brings the key back.
   */
  async delete(key: string): Promise<void> {
    await this.locks.run(key, async () => {
      const record = await this.index.beginDelete(key, { unlessLive: this.config.protect });
      if (record === undefined) throw MkvError.notFound();
      if (this.config.protect && record.state === 'live') {
        throw new MkvError(MkvErrorCode.MustUnlinkFirst, 'key must be unlinked before delete');
      }
      if (await this.files.deleteBlobs(key, record.volumes)) await this.index.finishDelete(key);
    });
  }

  /**
   * The blob deletes a crash or an unreachable volume left undone, each under
   * its key's lock. A key waits while one of its volumes is down or slow
   * (its delete would fail, or hold the lock until a timeout). One pass at a
   * time: a call during a pass gets that pass, which then runs once more.
   */
  retryPendingDeletes(): Promise<void> {
    if (this.deleteRetry !== undefined) {
      this.retryAgain = true;
      return this.deleteRetry;
    }
    this.deleteRetry = (async () => {
      try {
        do {
          this.retryAgain = false;
          await this.retryPendingDeletesOnce();
        } while (this.retryAgain);
      } finally {
        this.deleteRetry = undefined;
      }
    })();
    return this.deleteRetry;
  }

  private async retryPendingDeletesOnce(): Promise<void> {
    for (const { key, volumes } of await this.index.pendingDeletes()) {
      if (!volumes.every((volume) => this.health.mayReach(volume))) continue;
      await this.locks.run(key, async () => {
        // Written again since the list was read: its new blobs are at the same paths.
        if ((await this.index.get(key)) !== undefined) return;
        if (await this.files.deleteBlobs(key, volumes)) await this.index.finishDelete(key);
      });
    }
  }

  /** minikeyvalue's soft delete: the key answers 404 from now on, its blobs stay. */
  async unlink(key: string): Promise<void> {
    await this.locks.run(key, async () => {
      const record = await this.index.get(key);
      if (record === undefined || record.state !== 'live') throw MkvError.notFound();
      await this.index.setState(key, 'unlinked', Date.now());
    });
  }

  async list(options: { prefix: string; start?: string; limit: number; state: KeyState }): Promise<ListPage> {
    const keys = await this.index.list(options);
    const next = keys.length > options.limit ? keys.pop()! : '';
    return { keys, next };
  }
}
