export type KeyState = 'live' | 'unlinked';

/** What the index knows about one key. */
export interface KeyRecord {
  key: string;
  /** Volume URLs holding a replica, in placement order (the first is where GET redirects). */
  volumes: string[];
  size: number;
  /** Hex MD5 of the value. */
  md5: string;
  state: KeyState;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
}

/**
 * A PUT between renaming its uploads into place and finishing: recorded in
 * the same transaction as the new record, so after a crash the next start can
 * finish the renames and the volumes match the index again. Or a new key's
 * PUT written straight to the key's paths (`tempPath` is DIRECT_WRITE):
 * recorded before its first byte reaches a volume, so after a crash the next
 * start deletes the blobs that never got a record.
 */
export interface WriteIntent {
  id: string;
  key: string;
  /** Path of the uploaded blob on each volume, e.g. `/.mkv-tmp/<uuid>`; DIRECT_WRITE for a write to the key's own paths. */
  tempPath: string;
  volumes: string[];
  createdAt: number;
}

/**
 * The `tempPath` of a direct write's intent: the blobs went straight to the
 * key's paths (placement's blobUrl), there is no temporary name to rename.
 * Empty, so the intents table needs no new column.
 */
export const DIRECT_WRITE = '';

export interface ListOptions {
  prefix: string;
  /** Inclusive lower bound (the `next` of the previous page). */
  start?: string;
  limit: number;
  state: KeyState;
}

/** One blob a rebuild found on one volume. */
export interface FoundBlob {
  key: string;
  volume: string;
  size: number;
  /** Milliseconds since the epoch. */
  mtime: number;
}
