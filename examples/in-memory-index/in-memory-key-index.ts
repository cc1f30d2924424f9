/**
 * An index kept in this process's memory: the KeyIndex contract with no
 * database, written to be read (and copied to start a Redis or Postgres one).
 *
 * Limits, on purpose:
 * - Everything is lost when the process stops: the keys (the blobs stay on
 *   the volumes, but nothing points at them any more), the write intents a
 *   crash would need to finish, the blob deletes still to retry. There is no
 *   rebuild either (no REBUILD_STAGING), so nothing brings the keys back.
 * - Every key costs memory (its record, a slot in the sorted array); the
 *   array is kept sorted by inserting into it, which copies on average half
 *   of it: fine for thousands of keys, not for millions.
 * - One process only: two servers sharing a volume set each have their own.
 *
 * What a real store must keep from it:
 * - Keys are ordered by the bytes of their UTF-8 (Postgres: `COLLATE "C"`;
 *   Redis: sorted-set lex ranges), not JavaScript's `<` (UTF-16 code units,
 *   which puts U+1F600 before U+FFFF).
 * - beginWrite's conflict check and its write are one atomic step, and so is
 *   each other change (here: every method does all its work before its first
 *   `await`, so no other call runs in between; a database needs a
 *   transaction).
 * - Records go in and come out as copies: a caller that changes a record it
 *   was given must not change the index.
 */
import { Injectable } from '@nestjs/common';
import type { BeganWrite, IndexUsage, KeyIndex, KeyRecord, KeyState, ListOptions, WriteIntent } from 'mkv';

/** Byte order of the UTF-8 encodings, which is also code point order. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

interface Counter {
  keys: number;
  bytes: number;
}

@Injectable()
export class InMemoryKeyIndex implements KeyIndex {
  /** Every key, of any state, in byte order: what list and scan walk. */
  private readonly sorted: string[] = [];
  private readonly records = new Map<string, KeyRecord>();
  /** Write intents by id, oldest first (a Map keeps insertion order). */
  private readonly intents = new Map<string, WriteIntent>();
  /** Deleted keys whose blobs are still to be deleted, oldest first. */
  private readonly deletes = new Map<string, string[]>();
  /** Keys and bytes in all and per volume, kept up to date by store/remove so that usage() costs no pass over the keys. */
  private readonly totals: Counter = { keys: 0, bytes: 0 };
  private readonly perVolume = new Map<string, Counter>();

  async get(key: string): Promise<KeyRecord | undefined> {
    return copy(this.records.get(key));
  }

  async findConflict(key: string): Promise<string | undefined> {
    return this.conflictOf(key);
  }

  async beginWrite(record: KeyRecord, intent: WriteIntent): Promise<BeganWrite> {
    // Checked and written with no await in between: two conflicting keys cannot both pass.
    const conflict = this.conflictOf(record.key);
    if (conflict !== undefined) return { conflict };
    const previous = copy(this.records.get(record.key));
    this.store(record);
    this.deletes.delete(record.key); // the new value's blobs must not be deleted by a retry
    this.intents.set(intent.id, { ...intent, volumes: [...intent.volumes] });
    return { previous };
  }

  private conflictOf(key: string): string | undefined {
    // An ancestor that is a key would have to be a file where this key needs a directory...
    const segments = key.split('/');
    for (let i = 1; i < segments.length; i++) {
      const ancestor = segments.slice(0, i).join('/');
      if (this.records.has(ancestor)) return ancestor;
    }
    // ...and a key below this one needs this key's path to be a directory. The keys
    // starting with "key/" are next to each other in byte order, from where "key/" would be.
    const below = this.sorted[this.firstAtOrAfter(`${key}/`)];
    return below?.startsWith(`${key}/`) ? below : undefined;
  }

  async finishWrite(intentId: string, record?: KeyRecord): Promise<void> {
    if (record) this.store(record);
    this.intents.delete(intentId);
  }

  async abortWrite(intentId: string, key: string, previous: KeyRecord | undefined, undeleted: string[] = []): Promise<void> {
    if (previous) this.store(previous);
    else this.remove(key);
    this.intents.delete(intentId);
    if (undeleted.length > 0) {
      const noted = this.deletes.get(key) ?? [];
      this.deletes.delete(key); // noted again: it goes to the end, as the newest
      this.deletes.set(key, [...noted, ...undeleted.filter((volume) => !noted.includes(volume))]);
    }
  }

  async beginDirectWrite(intent: WriteIntent): Promise<void> {
    this.intents.set(intent.id, { ...intent, volumes: [...intent.volumes] });
  }

  async commitDirectWrite(record: KeyRecord, intentId: string): Promise<string | undefined> {
    // Checked with the write, with no await in between: two conflicting keys cannot both be stored.
    const conflict = this.conflictOf(record.key);
    if (conflict !== undefined) return conflict;
    this.store(record);
    this.deletes.delete(record.key); // the new value's blobs must not be deleted by a retry
    this.intents.delete(intentId);
    return undefined;
  }

  async pendingWrites(): Promise<WriteIntent[]> {
    return [...this.intents.values()].sort((a, b) => a.createdAt - b.createdAt).map((intent) => ({ ...intent, volumes: [...intent.volumes] }));
  }

  async setState(key: string, state: KeyState, updatedAt: number): Promise<void> {
    const record = this.records.get(key);
    if (record) this.store({ ...record, state, updatedAt });
  }

  async beginDelete(key: string, options: { unlessLive?: boolean } = {}): Promise<KeyRecord | undefined> {
    const record = this.records.get(key);
    if (record === undefined || (options.unlessLive && record.state === 'live')) return copy(record);
    this.deletes.delete(key); // noted again: it goes to the end, as the newest
    this.deletes.set(key, [...record.volumes]);
    this.remove(key);
    return copy(record);
  }

  async finishDelete(key: string): Promise<void> {
    this.deletes.delete(key);
  }

  async pendingDeletes(): Promise<{ key: string; volumes: string[] }[]> {
    return [...this.deletes].map(([key, volumes]) => ({ key, volumes: [...volumes] }));
  }

  async list({ prefix, start, limit, state }: ListOptions): Promise<string[]> {
    // The keys with the prefix are next to each other in byte order; start (inclusive) may skip some of them.
    const from = start && compareKeys(start, prefix) > 0 ? start : prefix;
    const keys: string[] = [];
    for (let i = this.firstAtOrAfter(from); i < this.sorted.length && keys.length <= limit; i++) {
      const key = this.sorted[i];
      if (!key.startsWith(prefix)) break;
      if (this.records.get(key)!.state === state) keys.push(key);
    }
    return keys; // one more than limit tells the caller there is a next page
  }

  async scan(after: string | undefined, limit: number): Promise<KeyRecord[]> {
    let i = after === undefined ? 0 : this.firstAtOrAfter(after);
    if (this.sorted[i] === after) i++; // after is exclusive
    return this.sorted.slice(i, i + limit).map((key) => copy(this.records.get(key))!);
  }

  async count(): Promise<number> {
    return this.sorted.length;
  }

  async usage(): Promise<IndexUsage> {
    const volumes = [...this.perVolume]
      .filter(([, counter]) => counter.keys > 0)
      .sort(([a], [b]) => compareKeys(a, b))
      .map(([volume, { keys, bytes }]) => ({ volume, keys, bytes }));
    return { keys: this.totals.keys, bytes: this.totals.bytes, volumes };
  }

  /** Memory always answers and takes writes. */
  async ping(): Promise<void> {}

  async setVolumes(key: string, volumes: string[]): Promise<void> {
    const record = this.records.get(key);
    if (record) this.store({ ...record, volumes });
  }

  /** Inserts or replaces the record; a key that exists keeps its created time. */
  private store(record: KeyRecord): void {
    const old = this.records.get(record.key);
    if (old) this.tally(old, -1);
    else this.sorted.splice(this.firstAtOrAfter(record.key), 0, record.key);
    const stored = { ...record, volumes: [...record.volumes], createdAt: old?.createdAt ?? record.createdAt };
    this.records.set(record.key, stored);
    this.tally(stored, 1);
  }

  private remove(key: string): void {
    const old = this.records.get(key);
    if (old === undefined) return;
    this.tally(old, -1);
    this.records.delete(key);
    this.sorted.splice(this.firstAtOrAfter(key), 1);
  }

  /** Adds a record to (sign 1) or takes it from (sign -1) the usage counters. */
  private tally(record: KeyRecord, sign: 1 | -1): void {
    this.totals.keys += sign;
    this.totals.bytes += sign * record.size;
    for (const volume of record.volumes) {
      const counter = this.perVolume.get(volume) ?? { keys: 0, bytes: 0 };
      counter.keys += sign;
      counter.bytes += sign * record.size;
      this.perVolume.set(volume, counter);
    }
  }

  /** Binary search: the position of the first key at or after `key` in byte order (sorted.length if none). */
  private firstAtOrAfter(key: string): number {
    let low = 0;
    let high = this.sorted.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (compareKeys(this.sorted[middle], key) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

function copy(record: KeyRecord | undefined): KeyRecord | undefined {
  return record && { ...record, volumes: [...record.volumes] };
}
