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
