import type { KeyRecord, KeyState, ListOptions, WriteIntent } from './key-record';

export const KEY_INDEX = Symbol('KEY_INDEX');

/**
 * The key -> volumes index. The default is SQLite; a team can provide another
 * store under KEY_INDEX. Failures reject with MkvError(DatabaseError).
 */
export interface KeyIndex {
  get(key: string): Promise<KeyRecord | undefined>;
  /** A key (any state) that would need a file where `key` needs a directory, or the reverse. */
  findConflict(key: string): Promise<string | undefined>;
  /**
   * Atomically: unless another key conflicts with this one (then returns it and
   * writes nothing), stores the new record and the intent to rename its uploads.
   */
  beginWrite(record: KeyRecord, intent: WriteIntent): Promise<string | undefined>;
  /** The renames are done: drop the intent, and store the record as it finally is. */
  finishWrite(intentId: string, record: KeyRecord): Promise<void>;
  /** Nothing was renamed: put back the previous record (or none) and drop the intent. */
  abortWrite(intentId: string, key: string, previous: KeyRecord | undefined): Promise<void>;
  pendingWrites(): Promise<WriteIntent[]>;
  setState(key: string, state: KeyState, updatedAt: number): Promise<void>;
  delete(key: string): Promise<void>;
  /** Keys in ascending byte order; one more than `limit` tells the caller there is a next page. */
  list(options: ListOptions): Promise<string[]>;
}
