import type { KeyRecord, KeyState, ListOptions, WriteIntent } from './key-record';

export const KEY_INDEX = Symbol('KEY_INDEX');

/** What beginWrite found: a conflicting key (nothing written), or the key's record before this write. */
export type BeganWrite = { conflict: string; previous?: undefined } | { conflict?: undefined; previous: KeyRecord | undefined };

export interface IndexUsage {
  keys: number;
  bytes: number;
  volumes: { volume: string; keys: number; bytes: number }[];
}

/**
 * The key -> volumes index. The default is SQLite; a team can provide another
 * store under KEY_INDEX. Failures reject with MkvError(DatabaseError).
 */
export interface KeyIndex {
  get(key: string): Promise<KeyRecord | undefined>;
  /** A key (any state) that would need a file where `key` needs a directory, or the reverse. */
  findConflict(key: string): Promise<string | undefined>;
  /**
   * Atomically: unless another key conflicts with this one (then returns it as
   * `conflict` and writes nothing), reads the key's previous record, stores
   * the new one (keeping the previous created time) and the intent to rename
   * its uploads.
   */
  beginWrite(record: KeyRecord, intent: WriteIntent): Promise<BeganWrite>;
  /** The renames are done: drop the intent, and store the record as it finally is when it changed since beginWrite. */
  finishWrite(intentId: string, record?: KeyRecord): Promise<void>;
  /**
   * Nothing was renamed (or a direct write failed): put back the previous
   * record (or none) and drop the intent. `undeleted` are volumes where a
   * blob at the key's own path could not be deleted (a failed direct write's,
   * with no previous record): they are noted as a pending delete of the key,
   * added to any note it has, as beginDelete notes them.
   */
  abortWrite(intentId: string, key: string, previous: KeyRecord | undefined, undeleted?: string[]): Promise<void>;
  /**
   * A new key written straight to its own paths: stores the intent alone
   * (its `tempPath` DIRECT_WRITE), before the first byte reaches a volume.
   * The caller holds the key's lock and saw no record for it. No conflict
   * check: commitDirectWrite makes it, with the record (a conflict is a
   * client's error, cheaper to find once than on every write).
   * Optional, with commitDirectWrite: an index without them has every PUT
   * uploaded under a temporary name and renamed (beginWrite, finishWrite).
   */
  beginDirectWrite?(intent: WriteIntent): Promise<void>;
  /**
   * The direct write's blobs are all in place. Atomically: unless another key
   * conflicts with it (then returns that key and changes nothing), stores the
   * record, drops the intent and any pending delete noted for the key (its
   * blobs are the new value now).
   */
  commitDirectWrite?(record: KeyRecord, intentId: string): Promise<string | undefined>;
  pendingWrites(): Promise<WriteIntent[]>;
  setState(key: string, state: KeyState, updatedAt: number): Promise<void>;
  /**
   * Removes the key and notes its blobs as being deleted, atomically, until
   * finishDelete: a rebuild meanwhile must not bring the key back from them,
   * and a delete a volume could not do is retried at the next start. A later
   * PUT of the key drops the note. Returns the record as it was (undefined:
   * no such key); with `unlessLive`, a live key is returned and left alone.
   */
  beginDelete(key: string, options?: { unlessLive?: boolean }): Promise<KeyRecord | undefined>;
  finishDelete(key: string): Promise<void>;
  pendingDeletes(): Promise<{ key: string; volumes: string[] }[]>;
  /** Keys in ascending byte order; one more than `limit` tells the caller there is a next page. */
  list(options: ListOptions): Promise<string[]>;

  /** Up to `limit` records of any state after `after`, in key order: how jobs page through the index. */
  scan(after: string | undefined, limit: number): Promise<KeyRecord[]>;
  count(): Promise<number>;
  /** Keys and bytes held by each volume, and in all, for reports; cheap enough to call on every scrape. */
  usage(): Promise<IndexUsage>;
  /**
   * Readiness: throws unless the index answers a read and can take a write
   * (a read-only file or mount fails it). Polled every few seconds, so it must
   * be cheap, commit nothing lasting, and not wait out another writer's lock.
   */
  ping(): Promise<void>;
  /** Changes where a key's replicas are, not its value (Last-Modified stays). */
  setVolumes(key: string, volumes: string[]): Promise<void>;
}
