import Database from 'better-sqlite3';

/** A row of the `keys` table as SQLite stores it. */
export interface IndexRow {
  key: string;
  volumes: string;
  size: number;
  md5: string;
  state: string;
  created_at: number;
  updated_at: number;
}

/** Every row of the index in key order, read as an operator's sqlite3 shell would: a second, read-only connection. */
export function readIndexRows(dbPath: string): IndexRow[] {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT * FROM keys ORDER BY key').all() as IndexRow[];
  } finally {
    db.close();
  }
}

/** The keys whose blob deletes are still to be done (`pending_deletes`), read the same way. */
export function readPendingDeleteKeys(dbPath: string): string[] {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT key FROM pending_deletes ORDER BY key').all() as { key: string }[]).map((row) => row.key);
  } finally {
    db.close();
  }
}

/** The write intents still recorded (`write_intents`), read the same way. */
export function readIntentRows(dbPath: string): { key: string; temp_path: string; volumes: string }[] {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT key, temp_path, volumes FROM write_intents ORDER BY key').all() as { key: string; temp_path: string; volumes: string }[];
  } finally {
    db.close();
  }
}
