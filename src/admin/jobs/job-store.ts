import type { JobView, PlannedMove } from './job';

export const JOB_STORE = Symbol('JOB_STORE');

/**
 * Where jobs and dry-run plans are kept, so they outlive a restart. It belongs
 * to the index (the stock one keeps them in the SQLite index file): an index
 * module exports JOB_STORE beside KEY_INDEX. Failures reject with
 * MkvError(DatabaseError).
 */
export interface JobStore {
  save(view: JobView): Promise<void>;
  load(id: string): Promise<JobView | undefined>;
  /** The newest first. */
  recent(limit: number): Promise<JobView[]>;
  /** Jobs left queued or running by a server that stopped: saved as interrupted, finished `now`. Returns how many. */
  markInterrupted(now: Date): Promise<number>;
  /** Stores moves `firstSeq`, `firstSeq + 1`, ... of a dry run's plan. */
  appendPlan(jobId: string, firstSeq: number, moves: PlannedMove[]): Promise<void>;
  /** The plan a page at a time, in order; `after` is the last seq read (0 at first). */
  planPage(jobId: string, after: number, limit: number): Promise<{ seq: number; move: PlannedMove }[]>;
}
