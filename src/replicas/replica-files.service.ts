import { Inject, Injectable, Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { Placement, PLACEMENT } from '../hashing/placement';
import { VOLUME_CLIENT, VolumeClient, VolumeError } from '../volumes/volume-client';

/** Uploads land here first; the dot-name keeps them out of listings, keys and rebuilds. */
export const TEMP_DIR = '/.mkv-tmp';

/**
 * The blob-level steps shared by every writer of replicas (PUT, recovery,
 * rebalance): a temporary upload name, the rename into the key's path, and
 * best-effort removal.
 */
@Injectable()
export class ReplicaFiles {
  private readonly logger = new Logger(ReplicaFiles.name);

  constructor(
    @Inject(PLACEMENT) private readonly placement: Placement,
    @Inject(VOLUME_CLIENT) private readonly volumes: VolumeClient,
  ) {}

  newTempPath(): string {
    return `${TEMP_DIR}/${randomUUID()}`;
  }

  /**
   * Renames an upload to the key's path. A directory standing there holds no
   * key (the caller holds the key's lock, and the index, which refuses `a`
   * next to `a/b`, has the key): if it holds no file either, it is what
   * deleted keys below it left behind (`a/` after `DELETE a/b`, `a/x/` after
   * `DELETE a/x/y`), so it is removed and the rename tried again. A directory
   * holding a file is left alone and the 409 stands: that file is no key's
   * (a blob whose delete failed, or a key a rebuild has yet to find), and
   * WebDAV's DELETE of a directory is recursive.
   */
  async moveIntoPlace(key: string, volume: string, tempPath: string): Promise<void> {
    const destination = this.placement.blobUrl(key, volume);
    try {
      await this.volumes.move(volume + tempPath, destination);
    } catch (error) {
      if (!(error instanceof VolumeError) || error.status !== 409) throw error;
      const file = await this.firstFileUnder(`${destination}/`);
      if (file !== undefined) {
        throw new VolumeError(destination, 409, `MOVE to ${destination}: a directory holding ${file} stands there`);
      }
      // Not atomic with the listing. What remains possible: a file put into
      // this directory straight on the volume (not through mkv: its index
      // refuses any key below this one) between the two is deleted with it,
      // and so is a dot-file, which nginx's listing never shows.
      await this.volumes.delete(`${destination}/`);
      this.logger.debug(`removed the empty directory left at ${destination}`);
      await this.volumes.move(volume + tempPath, destination);
    }
  }

  /** The URL of a file somewhere below `directory` (a URL ending with '/'), or undefined when it holds only directories. */
  private async firstFileUnder(directory: string): Promise<string | undefined> {
    const pending = [directory];
    while (pending.length > 0) {
      const dir = pending.pop()!;
      for await (const entry of this.volumes.list(dir)) {
        const url = `${dir}${encodeURIComponent(entry.name)}`;
        if (entry.type === 'file') return url;
        pending.push(`${url}/`);
      }
    }
    return undefined;
  }

  /** Best-effort removal of uploads that will never be renamed. */
  async discard(volumes: string[], tempPath: string): Promise<void> {
    await this.deleteEach(volumes.map((volume) => volume + tempPath));
  }

  /** Best-effort removal of the key's blob on these volumes; false when one could not be removed (logged). */
  async deleteBlobs(key: string, volumes: string[]): Promise<boolean> {
    return this.deleteEach(volumes.map((volume) => this.placement.blobUrl(key, volume)));
  }

  private async deleteEach(urls: string[]): Promise<boolean> {
    if (urls.length === 0) return true;
    const outcomes = await Promise.allSettled(urls.map((url) => this.volumes.delete(url)));
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') this.logger.warn(`delete failed: ${(outcome.reason as Error).message}`);
    }
    return outcomes.every((outcome) => outcome.status === 'fulfilled');
  }
}
