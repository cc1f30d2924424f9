import type { KeyRecord, KeyState } from '../key-record';

/** A row of `keys` (and of the rebuild's `keys_rebuild`, its twin) as better-sqlite3 returns it. */
export interface KeyRow {
  key: string;
  volumes: string;
  size: number;
  md5: string;
  state: KeyState;
  created_at: number;
  updated_at: number;
}

/** Comma-separated volume URLs (a normalized URL never holds a comma); '' is none. */
export function splitVolumes(volumes: string): string[] {
  return volumes === '' ? [] : volumes.split(',');
}

export function toRow(record: KeyRecord): KeyRow {
  return {
    key: record.key,
    volumes: record.volumes.join(','),
    size: record.size,
    md5: record.md5,
    state: record.state,
    created_at: record.createdAt,
    updated_at: record.updatedAt,
  };
}

export function fromRow(row: KeyRow): KeyRecord {
  return recordOf(row.key, row);
}

/** The record of `key` from its row read without the key column (the serving read: the caller has the key). */
export function recordOf(key: string, row: Omit<KeyRow, 'key'>): KeyRecord {
  return {
    key,
    volumes: splitVolumes(row.volumes),
    size: row.size,
    md5: row.md5,
    state: row.state,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
