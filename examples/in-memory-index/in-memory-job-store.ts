import { Injectable } from '@nestjs/common';
import type { JobStore, JobView, PlannedMove } from 'mkv';

/**
 * Jobs and dry-run plans in memory, beside the in-memory index: listed while
 * the process runs, gone after a restart (so there is never a job to mark
 * interrupted at start). A dry run's plan holds one entry per key it would
 * move: on a large index, that is memory for as long as the process lives.
 */
@Injectable()
export class InMemoryJobStore implements JobStore {
  private readonly jobs = new Map<string, JobView>();
  /** Each job's plan in the order it was appended, which is seq order. */
  private readonly plans = new Map<string, { seq: number; move: PlannedMove }[]>();

  async save(view: JobView): Promise<void> {
    this.jobs.set(view.id, structuredClone(view));
  }

  async load(id: string): Promise<JobView | undefined> {
    const view = this.jobs.get(id);
    return view && structuredClone(view);
  }

  async recent(limit: number): Promise<JobView[]> {
    return [...this.jobs.values()]
      .sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt))
      .slice(0, limit)
      .map((view) => structuredClone(view));
  }

  async markInterrupted(now: Date): Promise<number> {
    let interrupted = 0;
    for (const view of this.jobs.values()) {
      if (view.state !== 'queued' && view.state !== 'running') continue;
      this.jobs.set(view.id, { ...view, state: 'interrupted', finishedAt: now.toISOString() });
      interrupted++;
    }
    return interrupted;
  }

  async appendPlan(jobId: string, firstSeq: number, moves: PlannedMove[]): Promise<void> {
    const plan = this.plans.get(jobId) ?? [];
    moves.forEach((move, i) => plan.push({ seq: firstSeq + i, move: structuredClone(move) }));
    this.plans.set(jobId, plan);
  }

  async planPage(jobId: string, after: number, limit: number): Promise<{ seq: number; move: PlannedMove }[]> {
    const plan = this.plans.get(jobId) ?? [];
    const first = plan.findIndex((entry) => entry.seq > after);
    return first === -1 ? [] : plan.slice(first, first + limit).map((entry) => structuredClone(entry));
  }
}
