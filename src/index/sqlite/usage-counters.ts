/**
 * Keys and bytes per volume, kept by triggers on `keys` in the table
 * `index_usage` instead of counted on demand: a count is a pass over the whole
 * index (1.3 s on a million keys, holding the event loop), a trigger costs a
 * few microseconds per write. The row for volume '' holds the totals.
 * The live SQL: the rebuild's swap, which replaces the `keys` table and with
 * it its triggers, creates them and counts afresh from here. The migrations
 * hold their own frozen copies, so a change here needs a migration that
 * gives existing indexes the same triggers (migrations.spec.ts fails until
 * a fresh index's triggers equal these).
 */

/** The row's volumes as a JSON array, with '' first for the totals row. */
function volumesOf(row: string): string {
  return `json_each('[""' || CASE WHEN ${row}.volumes = '' THEN '' ELSE ',"' || replace(${row}.volumes, ',', '","') || '"' END || ']')`;
}

/**
 * Adds the row to (sign 1) or takes it from (sign -1) the counters of its
 * volumes and the totals. Both directions are one upsert keyed by the
 * counters' primary key: its cost does not grow with the number of volumes.
 * The other forms cost more inside a trigger, measured as the time a delete
 * takes above one without a trigger (a 30,000-key index, deletes committed
 * in groups of 50): `UPDATE ... FROM json_each(...)` 21 to 30 µs,
 * `WHERE volume IN (SELECT ... json_each(...))` 73 µs, and a scan matching
 * each counter's volume with instr() 2 µs with 4 counter rows but 16 µs with
 * 104. This upsert: 2 µs with either.
 */
const count = (row: string, sign: 1 | -1) => `
  INSERT INTO index_usage (volume, keys, bytes) SELECT value, ${sign}, ${sign} * ${row}.size FROM ${volumesOf(row)} WHERE true
    ON CONFLICT (volume) DO UPDATE SET keys = keys + excluded.keys, bytes = bytes + excluded.bytes;`;

// The writes upsert with ON CONFLICT DO UPDATE, which fires the update
// trigger; INSERT OR REPLACE would not fire the delete one (recursive
// triggers are off) and the counts would drift.
export const USAGE_TRIGGERS = [
  `CREATE TRIGGER "usage_on_insert" AFTER INSERT ON "keys" BEGIN ${count('NEW', 1)} END`,
  `CREATE TRIGGER "usage_on_delete" AFTER DELETE ON "keys" BEGIN ${count('OLD', -1)} END`,
  `CREATE TRIGGER "usage_on_update" AFTER UPDATE OF volumes, size ON "keys"
     WHEN OLD.volumes IS NOT NEW.volumes OR OLD.size IS NOT NEW.size
     BEGIN ${count('NEW', 1)} ${count('OLD', -1)} END`,
];

/** Counts from scratch: once when the table is created, and after a rebuild's swap. */
export const RECOUNT_USAGE = [
  'DELETE FROM index_usage',
  `INSERT INTO index_usage (volume, keys, bytes)
     SELECT v.value, COUNT(*), SUM(k.size) FROM keys AS k, ${volumesOf('k')} AS v GROUP BY v.value`,
];
