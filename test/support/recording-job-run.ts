import type { JobCounters, PlannedMove } from '../../src/admin/jobs/job';
import type { JobRun } from '../../src/admin/jobs/jobs.service';

/** A JobRun for unit specs: collects what a job reports, as JobsService would show it. */
export class RecordingJobRun implements JobRun {
  readonly controller = new AbortController();
  readonly counters: JobCounters = { scanned: 0, planned: 0, moved: 0, skipped: 0, failed: 0, bytes: 0 };
  readonly errors: { key: string; message: string }[] = [];
  readonly planned: PlannedMove[] = [];
  readonly phases: { name: string; total: number | null }[] = [];
  done = 0;
  /** Cancels the job once this many keys (or files) were scanned. */
  abortAfterScanned?: number;
  /** Cancels the job when it enters this phase. */
  abortOnPhase?: string;

  constructor(
    readonly dryRun = false,
    readonly id = 'spec-job',
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  phase(name: string, total: number | null): void {
    this.phases.push({ name, total });
    if (name === this.abortOnPhase) this.controller.abort();
  }

  advance(done = 1): void {
    this.done += done;
  }

  count(counter: keyof JobCounters, amount = 1): void {
    this.counters[counter] += amount;
    if (counter === 'scanned' && this.counters.scanned === this.abortAfterScanned) this.controller.abort();
  }

  fail(key: string, message: string): void {
    this.counters.failed += 1;
    this.errors.push({ key, message });
  }

  async plan(moves: PlannedMove[]): Promise<void> {
    this.planned.push(...moves);
  }
}
