import { Inject, Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { pipeline, Transform } from 'node:stream';
import { forEachConcurrently, yieldToEventLoop } from '../../common/concurrency';
import { Placement, PLACEMENT } from '../../hashing/placement';
import { KEY_INDEX, KeyIndex } from '../../index/key-index';
import type { KeyRecord } from '../../index/key-record';
import type { PlannedMove } from '../jobs/job';
import type { JobRun } from '../jobs/jobs.service';
import { KeyLocks } from '../../replicas/key-locks';
import { ReplicaFiles } from '../../replicas/replica-files.service';
import { VOLUME_CLIENT, VolumeClient } from '../../volumes/volume-client';
import { DEFAULT_REBALANCE_CONCURRENCY } from './rebalance-defaults';

const PAGE_SIZE = 1000;

/** What placement wants for a key compared with where the index says it is. */
interface KeyPlan {
  targets: string[];
  /** Target volumes without a copy yet. */
  missing: string[];
  /** Volumes with a copy that placement no longer wants. */
  extra: string[];
}

/**
 * Moves every key to the volumes its placement names under the current volume
 * list. Per key, under the same lock as PUT/DELETE/UNLINK: copy the blob from
 * a replica that has it to each missing target (streamed volume to volume,
 * size and MD5 checked), record the new replicas, and only then delete the
 * copies placement no longer wants. A key that fails keeps every good copy;
 * running again finishes the work.
 */
@Injectable()
export class RebalanceService {
  constructor(
    @Inject(PLACEMENT) private readonly placement: Placement,
    private readonly locks: KeyLocks,
    private readonly files: ReplicaFiles,
    @Inject(KEY_INDEX) private readonly index: KeyIndex,
    @Inject(VOLUME_CLIENT) private readonly volumes: VolumeClient,
  ) {}

  async run(run: JobRun, { concurrency = DEFAULT_REBALANCE_CONCURRENCY }: { concurrency?: number } = {}): Promise<void> {
    run.phase(run.dryRun ? 'planning' : 'moving', await this.index.count());
    // Keyset paging: memory holds one page whatever the number of keys.
    for (let after: string | undefined; !run.signal.aborted; ) {
      const page = await this.index.scan(after, PAGE_SIZE);
      if (page.length === 0) return;
      after = page[page.length - 1].key;
      if (run.dryRun) await this.planPage(page, run);
      else await forEachConcurrently(page, concurrency, run.signal, (record) => this.rebalanceKey(record.key, run));
      await yieldToEventLoop();
    }
  }

  private async planPage(page: KeyRecord[], run: JobRun): Promise<void> {
    const moves: PlannedMove[] = [];
    for (const record of page) {
      run.count('scanned');
      run.advance();
      const plan = this.planFor(record);
      if (!plan) {
        run.count('skipped');
        continue;
      }
      run.count('planned');
      run.count('bytes', record.size * plan.missing.length);
      moves.push({ key: record.key, size: record.size, from: record.volumes[0] ?? '', to: plan.missing, drop: plan.extra });
    }
    await run.plan(moves);
  }

  private async rebalanceKey(key: string, run: JobRun): Promise<void> {
    await this.locks.run(key, async () => {
      run.count('scanned');
      run.advance();
      // Read again under the lock: a PUT or DELETE may have come first.
      const record = await this.index.get(key);
      const plan = record && this.planFor(record);
      if (!record || !plan) {
        run.count('skipped');
        return;
      }
      const copied: string[] = [];
      let failure: string | undefined;
      for (const target of plan.missing) {
        try {
          await this.copy(record, target);
          copied.push(target);
          run.count('bytes', record.size);
        } catch (error) {
          failure ??= (error as Error).message;
        }
      }
      const holding = plan.targets.filter((v) => record.volumes.includes(v) || copied.includes(v));
      if (failure !== undefined) {
        // Every good copy stays listed, wanted or not: nothing is deleted.
        if (copied.length > 0) await this.index.setVolumes(key, [...holding, ...plan.extra]);
        run.fail(key, failure);
        return;
      }
      await this.index.setVolumes(key, holding);
      await this.files.deleteBlobs(key, plan.extra);
      run.count('moved');
    });
  }

  /** Undefined when the key is already exactly where placement wants it. */
  private planFor(record: KeyRecord): KeyPlan | undefined {
    const targets = this.placement.replicasFor(record.key);
    const missing = targets.filter((v) => !record.volumes.includes(v));
    const extra = record.volumes.filter((v) => !targets.includes(v));
    const inOrder = targets.length === record.volumes.length && targets.every((v, i) => v === record.volumes[i]);
    return inOrder ? undefined : { targets, missing, extra };
  }

  /** Copies the key's blob to `target`, from the first replica that can give a verified copy. */
  private async copy(record: KeyRecord, target: string): Promise<void> {
    let lastError: Error = new Error('no replica to copy from');
    for (const source of record.volumes) {
      const tempPath = this.files.newTempPath();
      try {
        await this.copyFrom(record, source, target, tempPath);
        await this.files.moveIntoPlace(record.key, target, tempPath);
        return;
      } catch (error) {
        lastError = error as Error;
        await this.files.discard([target], tempPath);
      }
    }
    throw lastError;
  }

  private async copyFrom(record: KeyRecord, source: string, target: string, tempPath: string): Promise<void> {
    const { body } = await this.volumes.get(this.placement.blobUrl(record.key, source));
    const md5 = createHash('md5');
    let size = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        md5.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    pipeline(body, counted, () => undefined); // an error on either side destroys both, failing the PUT
    await this.volumes.put(target + tempPath, counted, { length: record.size });
    if (size !== record.size) throw new Error(`copy from ${source} has ${size} bytes, the index says ${record.size}`);
    // A rebuilt record may not know its MD5 yet; the size was checked.
    if (record.md5 && md5.digest('hex') !== record.md5) throw new Error(`copy from ${source} does not match the index MD5`);
  }
}
