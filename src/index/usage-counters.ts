/**
 * Keys and bytes per volume, kept by triggers on `keys` in the table
 * `index_usage` instead of counted on demand: a count is a pass over the whole
 * index (1.3 s on a million keys, holding the event loop), a trigger costs a
 * few microseconds per write. The row for volume '' holds the totals.
 * Shared by the migration that creates them and the rebuild's swap, which
 * replaces the `keys` table and with it its triggers.
 */

/** The row's volumes as a JSON array, with '' first for the totals row. */
function volumesOf(row: string): string {
  return `json_each('[""' || CASE WHEN ${row}.volumes = '' THEN '' ELSE ',"' || replace(${row}.volumes, ',', '","') || '"' END || ']')`;
}

const add = (row: string) => `
  INSERT INTO index_usage (volume, keys, bytes) SELECT value, 1, ${row}.size FROM ${volumesOf(row)} WHERE true
    ON CONFLICT (volume) DO UPDATE SET keys = keys + 1, bytes = bytes + excluded.bytes;`;

// UPDATE ... FROM, not WHERE volume IN (SELECT ...): inside a trigger the
// subquery form cost 35 µs a write, this one 1.5. For the same reason the
// update trigger adds before it subtracts: the other order took 50 µs.
const subtract = (row: string) => `
  UPDATE index_usage SET keys = keys - 1, bytes = bytes - ${row}.size FROM ${volumesOf(row)} AS v WHERE index_usage.volume = v.value;`;

export const USAGE_TABLE = `
  CREATE TABLE "index_usage" (
    "volume" TEXT NOT NULL PRIMARY KEY,
    "keys" INTEGER NOT NULL,
    "bytes" INTEGER NOT NULL
  ) WITHOUT ROWID`;

// The writes upsert with ON CONFLICT DO UPDATE, which fires the update
// trigger; INSERT OR REPLACE would not fire the delete one (recursive
// triggers are off) and the counts would drift.
export const USAGE_TRIGGERS = [
  `CREATE TRIGGER "usage_on_insert" AFTER INSERT ON "keys" BEGIN ${add('NEW')} END`,
  `CREATE TRIGGER "usage_on_delete" AFTER DELETE ON "keys" BEGIN ${subtract('OLD')} END`,
  `CREATE TRIGGER "usage_on_update" AFTER UPDATE OF volumes, size ON "keys"
     WHEN OLD.volumes IS NOT NEW.volumes OR OLD.size IS NOT NEW.size
     BEGIN ${add('NEW')} ${subtract('OLD')} END`,
];

/** Counts from scratch: once when the table is created, and after a rebuild's swap. */
export const RECOUNT_USAGE = [
  'DELETE FROM index_usage',
  `INSERT INTO index_usage (volume, keys, bytes)
     SELECT v.value, COUNT(*), SUM(k.size) FROM keys AS k, ${volumesOf('k')} AS v GROUP BY v.value`,
];
