export type JobKind = 'rebuild' | 'rebalance';
/** `interrupted`: the server stopped while the job was unfinished. */
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';

export interface JobCounters {
  /** Keys (or blobs, for a rebuild) looked at. */
  scanned: number;
  /** Keys a dry run would change. */
  planned: number;
  /** Keys changed. */
  moved: number;
  /** Keys already where they belong. */
  skipped: number;
  failed: number;
  /** Bytes copied (or, in a dry run, that would be). */
  bytes: number;
}

export interface JobProgress {
  phase: string;
  done: number;
  /** Null while unknown (a rebuild walking the volumes). */
  total: number | null;
  percent: number;
}

/** One planned copy of a key's blob: what a dry-run rebalance reports. */
export interface PlannedMove {
  key: string;
  size: number;
  /** The replica it would be copied from. */
  from: string;
  to: string[];
  /** Volumes whose copy would be deleted afterwards. */
  drop: string[];
}

export interface PlanSummary {
  keys: number;
  bytes: number;
  /** Per source and destination volume. */
  moves: { from: string; to: string; keys: number; bytes: number }[];
}

export interface JobView {
  id: string;
  kind: JobKind;
  dryRun: boolean;
  state: JobState;
  progress: JobProgress;
  counters: JobCounters;
  /** The first failures, with their keys. */
  errors: { key: string; message: string }[];
  /** Why the job as a whole failed, when it did. */
  error?: string;
  plan?: PlanSummary;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export const TERMINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled', 'interrupted'];
