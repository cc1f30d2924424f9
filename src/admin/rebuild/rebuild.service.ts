import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { yieldToEventLoop } from '../../common/concurrency';
import { MkvError, MkvErrorCode } from '../../common/mkv-error';
import { MkvConfig } from '../../config/mkv-config';
import { Placement, PLACEMENT } from '../../hashing/placement';
import { REBUILD_STAGING, RebuildStaging } from '../../index/rebuild-staging';
import type { FoundBlob } from '../../index/key-record';
import type { JobRun } from '../jobs/jobs.service';
import { validateKey } from '../../common/key-path';
import { VOLUME_CLIENT, VolumeClient } from '../../volumes/volume-client';

const BATCH_SIZE = 500;
const SUBVOLUME_DIR = /^sv[0-9A-F]{2}$/;

interface Directory {
  /** URL path on the volume, percent-encoded, ending with '/'. */
  path: string;
  /** The key prefix files in it get. */
  prefix: string;
}

/**
 * Rebuilds the index from what the volumes hold: every volume's nginx
 * listing is walked, a directory at a time, into a staging index while the
 * serving one keeps answering; replicas are put in placement order; then the
 * staging index is swapped in. Writes made meanwhile win over what was found,
 * and what the old index knew (unlinked state, MD5) is carried over. A copy
 * on a volume the old index did not list for its key is left out (counted
 * as skipped, left on the volume) unless none of the known replicas is found.
 */
@Injectable()
export class RebuildService {
  private readonly logger = new Logger(RebuildService.name);

  constructor(
    private readonly config: MkvConfig,
    @Inject(PLACEMENT) private readonly placement: Placement,
    @Optional() @Inject(REBUILD_STAGING) private readonly staging: RebuildStaging | undefined,
    @Inject(VOLUME_CLIENT) private readonly volumes: VolumeClient,
  ) {}

  /** False when the index has no rebuild staging (a team's index may not): the job is refused. */
  get supported(): boolean {
    return this.staging !== undefined;
  }

  async run(run: JobRun): Promise<void> {
    const staging = this.requireStaging();
    await staging.beginRebuild();
    try {
      run.phase('listing volumes', this.config.volumes.length);
      let strays = 0;
      for (const volume of this.config.volumes) {
        if (run.signal.aborted) break;
        strays += await this.walk(volume, run);
        run.advance();
      }
      if (!run.signal.aborted) {
        const adopted = await staging.adoptStrays();
        for (const { key, volumes } of adopted) {
          this.logger.warn(`rebuild indexes ${key} on ${volumes.join(', ')}: none of its known replicas was found; its MD5 is unknown`);
        }
        run.count('skipped', strays - adopted.reduce((copies, { volumes }) => copies + volumes.length, 0));
        await this.orderReplicas(run);
      }
      if (run.signal.aborted) {
        await staging.abandonRebuild();
        return;
      }
      run.phase('swapping in the new index', 1);
      const keys = await staging.swapRebuild();
      run.count('moved', keys);
      run.advance();
    } catch (error) {
      // The serving index was never touched.
      await staging.abandonRebuild().catch(() => undefined);
      throw error;
    }
  }

  private requireStaging(): RebuildStaging {
    if (this.staging === undefined) throw rebuildNotSupported();
    return this.staging;
  }

  /** Depth first, one directory listing streamed at a time. Returns how many copies were set aside as strays. */
  private async walk(volume: string, run: JobRun): Promise<number> {
    const staging = this.requireStaging();
    const pending: Directory[] = [{ path: '/', prefix: '' }];
    let batch: FoundBlob[] = [];
    let strays = 0;
    const stage = async () => {
      for (const stray of await staging.stageFound(batch)) {
        strays += 1;
        this.logger.warn(`rebuild sets aside ${stray.key} on ${stray.volume}: the index lists the key on other volumes; left on the volume`);
      }
      batch = [];
    };
    while (pending.length > 0 && !run.signal.aborted) {
      const dir = pending.pop()!;
      const atRoot = dir.path === '/';
      for await (const entry of this.volumes.list(volume + dir.path)) {
        if (entry.type === 'directory') {
          // With subvolumes the top level holds only /svXX, which is not part of any key.
          const isSubvolume = atRoot && this.config.subvolumes > 1 && SUBVOLUME_DIR.test(entry.name);
          pending.push({
            path: `${dir.path}${encodeURIComponent(entry.name)}/`,
            prefix: isSubvolume ? dir.prefix : `${dir.prefix}${entry.name}/`,
          });
          continue;
        }
        run.count('scanned');
        const found = this.keyOf(`${dir.prefix}${entry.name}`, volume, `${volume}${dir.path}${encodeURIComponent(entry.name)}`);
        if ('problem' in found) {
          this.logger.warn(`rebuild skips ${volume}${dir.path}${entry.name}: ${found.problem}`);
          run.count('skipped');
          continue;
        }
        batch.push({ key: found.key, volume, size: entry.size ?? 0, mtime: entry.mtime });
        if (batch.length >= BATCH_SIZE) {
          await stage();
          await yieldToEventLoop();
        }
      }
    }
    await stage();
    return strays;
  }

  /**
   * The key whose blob a file found on a volume is, or why it is no key's:
   * its path (`path`, below any /svXX the walk stepped over) less whatever
   * directory placement puts before keys, where placement puts that key's
   * blob on this volume (`url`) exactly. The longest such key wins; with the
   * stock placement the whole path is the only candidate that can match.
   */
  private keyOf(path: string, volume: string, url: string): { key: string } | { problem: string } {
    const expected = this.placement.blobUrl(path, volume);
    if (expected === url) return validKey(path);
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const key = segments.slice(i).join('/');
      if (this.placement.blobUrl(key, volume) === url) return validKey(key);
    }
    const invalid = validKey(path);
    if ('problem' in invalid) return invalid;
    return { problem: `placement puts it under ${placementDir(expected, volume, path)}` };
  }

  /**
   * Puts each key's replicas in placement order, and settles pairs such as
   * `a` and `a/b` that cannot both be keys (a stray left by a delete that
   * failed on one volume): the newer one is kept, the other reported.
   */
  private async orderReplicas(run: JobRun): Promise<void> {
    const staging = this.requireStaging();
    run.phase('ordering replicas', null);
    for (let after: string | undefined; !run.signal.aborted; ) {
      const page = await staging.scanStaged(after, BATCH_SIZE);
      if (page.length === 0) return;
      after = page[page.length - 1].key;
      const staged = new Map((await staging.getStaged(page.flatMap((r) => ancestorsOf(r.key)))).map((r) => [r.key, r]));
      const dropped = new Map<string, string>();
      const updates: { key: string; volumes: string[] }[] = [];
      for (const record of page) {
        if (dropped.has(record.key)) continue;
        const ancestor = ancestorsOf(record.key).map((key) => staged.get(key)).find((r) => r && !dropped.has(r.key));
        if (ancestor) {
          const [kept, lost] = ancestor.updatedAt > record.updatedAt ? [ancestor, record] : [record, ancestor];
          dropped.set(lost.key, kept.key);
          if (lost === record) continue;
        }
        const ordered = this.placement.rank(record.key).filter((v) => record.volumes.includes(v));
        if (ordered.join(',') !== record.volumes.join(',')) updates.push({ key: record.key, volumes: ordered });
      }
      await staging.setStagedVolumes(updates);
      await staging.dropStaged([...dropped.keys()]);
      for (const [lost, kept] of dropped) {
        run.fail(lost, `conflicts with the newer key ${kept}: left out of the index, its blobs left on the volumes`);
      }
      run.advance(page.length);
      await yieldToEventLoop();
    }
  }
}

/** The refusal of a rebuild on an index without staging (501). */
export function rebuildNotSupported(): MkvError {
  return new MkvError(MkvErrorCode.NotSupported, 'rebuild is not supported by this index');
}

/** `a/b/c` -> [`a`, `a/b`]: the keys that would need to be files where this one needs directories. */
function ancestorsOf(key: string): string[] {
  const segments = key.split('/');
  return segments.slice(1).map((_, i) => segments.slice(0, i + 1).join('/'));
}

function validKey(key: string): { key: string } | { problem: string } {
  try {
    validateKey(key);
    return { key };
  } catch (error) {
    return { problem: (error as Error).message };
  }
}

/**
 * The directory placement puts before the key's path in its blob URL on this
 * volume (the stock placement's /svXX), or the whole URL when it is not on it.
 */
function placementDir(blobUrl: string, volume: string, key: string): string {
  if (!blobUrl.startsWith(`${volume}/`)) return blobUrl;
  const segments = blobUrl.slice(volume.length).split('/');
  return segments.slice(0, segments.length - key.split('/').length).join('/') || '/';
}
