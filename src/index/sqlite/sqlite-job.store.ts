import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, In, MoreThan, Repository } from 'typeorm';
import { MkvError } from '../../common/mkv-error';
import type { JobView, PlannedMove } from '../../admin/jobs/job';
import type { JobStore } from '../../admin/jobs/job-store';
import { JobEntity } from './job.entity';
import { JobPlanEntity } from './job-plan.entity';

/** The job store in the SQLite index file. */
@Injectable()
export class SqliteJobStore implements JobStore {
  private readonly jobs: Repository<JobEntity>;
  private readonly plans: Repository<JobPlanEntity>;

  constructor(@InjectDataSource() dataSource: DataSource) {
    this.jobs = dataSource.getRepository(JobEntity);
    this.plans = dataSource.getRepository(JobPlanEntity);
  }

  async save(view: JobView): Promise<void> {
    await guard(this.jobs.save({ id: view.id, kind: view.kind, state: view.state, view: JSON.stringify(view), createdAt: Date.parse(view.createdAt) }));
  }

  async load(id: string): Promise<JobView | undefined> {
    const row = await guard(this.jobs.findOneBy({ id }));
    return row ? (JSON.parse(row.view) as JobView) : undefined;
  }

  async recent(limit: number): Promise<JobView[]> {
    const rows = await guard(this.jobs.find({ order: { createdAt: 'DESC' }, take: limit }));
    return rows.map((row) => JSON.parse(row.view) as JobView);
  }

  /** Jobs left queued or running by a server that stopped: they will never finish. */
  async markInterrupted(now: Date): Promise<number> {
    const rows = await guard(this.jobs.findBy({ state: In(['queued', 'running']) }));
    for (const row of rows) {
      const view = JSON.parse(row.view) as JobView;
      await this.save({ ...view, state: 'interrupted', finishedAt: now.toISOString() });
    }
    return rows.length;
  }

  async appendPlan(jobId: string, firstSeq: number, moves: PlannedMove[]): Promise<void> {
    if (moves.length === 0) return;
    await guard(this.plans.insert(moves.map((move, i) => ({ jobId, seq: firstSeq + i, entry: JSON.stringify(move) }))));
  }

  /** The plan a page at a time, in order; `after` is the last seq read. */
  async planPage(jobId: string, after: number, limit: number): Promise<{ seq: number; move: PlannedMove }[]> {
    const rows = await guard(this.plans.find({ where: { jobId, seq: MoreThan(after) }, order: { seq: 'ASC' }, take: limit }));
    return rows.map((row) => ({ seq: row.seq, move: JSON.parse(row.entry) as PlannedMove }));
  }
}

async function guard<T>(query: Promise<T>): Promise<T> {
  try {
    return await query;
  } catch (error) {
    throw MkvError.database(error);
  }
}
