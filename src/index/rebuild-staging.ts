import type { FoundBlob, KeyRecord } from './key-record';

export const REBUILD_STAGING = Symbol('REBUILD_STAGING');

/**
 * What a rebuild needs of an index beyond serving keys: a staging index it
 * fills from the volumes while the serving one keeps answering, then swaps
 * in. An index that provides none has no rebuild (the job is refused).
 * Failures reject with MkvError(DatabaseError).
 */
export interface RebuildStaging {
  /**
   * Starts an empty staging index. Keys the serving index changes after
   * this (writes, unlinks, deletes) and keys mid-write keep their serving
   * rows over what was found.
   */
  beginRebuild(): Promise<void>;
  /**
   * Adds blobs found on the volumes; replicas of one key with another size
   * keep the newest. A copy of a key the serving index knows, on a volume it
   * does not list for that key, is set aside instead, and returned.
   */
  stageFound(blobs: FoundBlob[]): Promise<FoundBlob[]>;
  /**
   * Once every volume is walked: the keys none of whose known replicas was
   * found get the copies set aside for them (no MD5 is carried over to
   * those). Returns those keys with the volumes they now have.
   */
  adoptStrays(): Promise<{ key: string; volumes: string[] }[]>;
  scanStaged(after: string | undefined, limit: number): Promise<KeyRecord[]>;
  setStagedVolumes(updates: { key: string; volumes: string[] }[]): Promise<void>;
  /** The staged records among these keys. */
  getStaged(keys: string[]): Promise<KeyRecord[]>;
  dropStaged(keys: string[]): Promise<void>;
  /**
   * Replaces the serving index with the staged one, carrying over from the
   * old index each key's state, created time and MD5 (where the size agrees
   * and the copies are ones the old index listed).
   * Returns how many keys the new index holds.
   */
  swapRebuild(): Promise<number>;
  abandonRebuild(): Promise<void>;
}
