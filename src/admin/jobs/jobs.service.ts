import { Inject, Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { MkvError, MkvErrorCode } from '../../common/mkv-error';
import { JobCounters, JobKind, JobState, JobView, PlannedMove, TERMINAL_STATES } from './job';
import { JOB_STORE, JobStore } from './job-store';

/** What a running job sees: its options, a cancel signal, and how to report. */
export interface JobRun {
  readonly id: string;
  readonly dryRun: boolean;
  /** Aborted on cancel: stop at the next safe point (between keys). */
  readonly signal: AbortSignal;
  phase(name: string, total: number | null): void;
  advance(done?: number): void;
  count(counter: keyof JobCounters, amount?: number): void;
  /** A key that could not be handled: counted as failed, the first ones kept with the reason. */
  fail(key: string, message: string): void;
  /** Appends to a dry run's plan (stored, streamed by GET /_admin/jobs/{id}/plan, summed in the view). */
  plan(moves: PlannedMove[]): Promise<void>;
}

export type JobRunner = (run: JobRun) => Promise<void>;

interface LiveJob {
  view: JobView;
  controller: AbortController;
  finished: Promise<JobView>;
}

const KEPT_ERRORS = 100;
/** The abort reason when the process stops: the job ends interrupted, not cancelled. */
const SHUTDOWN = Symbol('shutdown');
const SAVE_EVERY_MS = 1000;

/**
 * The in-process registry of long-running admin jobs. Topology jobs (rebuild,
 * rebalance) run one at a time; every job is saved in the index database as
 * it goes, so it can be listed after it ends and after a restart.
 */
@Injectable()
export class JobsService implements OnModuleDestroy {
  private readonly logger = new Logger(JobsService.name);
  private readonly live = new Map<string, LiveJob>();

  constructor(@Inject(JOB_STORE) private readonly store: JobStore) {}

  /**
   * Queues the job and returns at once; the runner goes on in the background.
   * A job that cannot be saved rejects (MkvError DatabaseError) and is not started.
   */
  async start(kind: JobKind, dryRun: boolean, runner: JobRunner): Promise<JobView> {
    const running = [...this.live.values()].find((job) => !TERMINAL_STATES.includes(job.view.state));
    if (running) {
      throw new MkvError(MkvErrorCode.JobConflict, `a ${running.view.kind} job is already running: ${running.view.id}`);
    }
    const view: JobView = {
      id: randomUUID(),
      kind,
      dryRun,
      state: 'queued',
      progress: { phase: 'queued', done: 0, total: null, percent: 0 },
      counters: { scanned: 0, planned: 0, moved: 0, skipped: 0, failed: 0, bytes: 0 },
      errors: [],
      ...(kind === 'rebalance' && dryRun ? { plan: { keys: 0, bytes: 0, moves: [] } } : {}),
      createdAt: new Date().toISOString(),
      startedAt: null,
      finishedAt: null,
    };
    const controller = new AbortController();
    const job: LiveJob = { view, controller, finished: Promise.resolve(view) };
    this.live.set(view.id, job); // before the save, so a second start meanwhile is refused
    try {
      await this.store.save(view);
    } catch (error) {
      // Never recorded, never run: forget it, or it would hold every later job off as "already running".
      this.live.delete(view.id);
      throw error;
    }
    job.finished = this.execute(job, runner);
    return structuredClone(view);
  }

  async get(id: string): Promise<JobView> {
    const live = this.live.get(id);
    if (live) return structuredClone(live.view);
    const stored = await this.store.load(id);
    if (!stored) throw new MkvError(MkvErrorCode.NotFound, `job ${id} not found`);
    return stored;
  }

  /** Recent jobs, newest first. */
  async list(limit = 50): Promise<JobView[]> {
    const stored = await this.store.recent(limit);
    return stored.map((view) => (this.live.has(view.id) ? structuredClone(this.live.get(view.id)!.view) : view));
  }

  /** The newest job of each kind this process ran, as it is now (for the metrics). */
  latestByKind(): JobView[] {
    const latest = new Map<string, JobView>();
    for (const { view } of this.live.values()) latest.set(view.kind, view); // insertion order: newest last
    return [...latest.values()].map((view) => structuredClone(view));
  }

  /** Asks a running job to stop at its next safe point; a finished job is returned as it is. */
  async cancel(id: string): Promise<JobView> {
    const live = this.live.get(id);
    if (live && !TERMINAL_STATES.includes(live.view.state)) live.controller.abort();
    return this.get(id);
  }

  /** Resolves with the job's final view (for the CLI and tests). */
  async wait(id: string): Promise<JobView> {
    const live = this.live.get(id);
    return live ? live.finished : this.get(id);
  }

  /** A dry run's planned moves, in order, a page at a time. */
  async *plan(id: string): AsyncIterable<PlannedMove> {
    await this.get(id); // 404 for an unknown job
    for (let after = 0; ; ) {
      const page = await this.store.planPage(id, after, 1000);
      if (page.length === 0) return;
      for (const { seq, move } of page) {
        after = seq;
        yield move;
      }
    }
  }

  /** At server start: jobs a previous process left unfinished will never finish. */
  async markInterrupted(): Promise<void> {
    const count = await this.store.markInterrupted(new Date());
    if (count > 0) this.logger.warn(`${count} unfinished job(s) from before the restart marked interrupted`);
  }

  async onModuleDestroy(): Promise<void> {
    for (const job of this.live.values()) job.controller.abort(SHUTDOWN);
    await Promise.allSettled([...this.live.values()].map((job) => job.finished));
  }

  private async execute(job: LiveJob, runner: JobRunner): Promise<JobView> {
    const { view, controller } = job;
    await Promise.resolve(); // let start() return the queued view first
    view.state = 'running';
    view.startedAt = new Date().toISOString();
    let planSeq = 0;
    const saver = setInterval(() => void this.save(view), SAVE_EVERY_MS);
    saver.unref();
    const run: JobRun = {
      id: view.id,
      dryRun: view.dryRun,
      signal: controller.signal,
      phase: (name, total) => {
        view.progress = { phase: name, done: 0, total, percent: 0 };
      },
      advance: (done = 1) => {
        const progress = view.progress;
        progress.done += done;
        progress.percent = progress.total ? Math.min(100, Math.floor((progress.done / progress.total) * 100)) : 0;
      },
      count: (counter, amount = 1) => {
        view.counters[counter] += amount;
      },
      fail: (key, message) => {
        view.counters.failed += 1;
        if (view.errors.length < KEPT_ERRORS) view.errors.push({ key, message });
      },
      plan: async (moves) => {
        await this.store.appendPlan(view.id, planSeq + 1, moves);
        planSeq += moves.length;
        summarize(view, moves);
      },
    };
    try {
      await this.save(view);
      await runner(run);
      view.state = stopped(controller.signal) ?? (view.counters.failed > 0 ? 'failed' : 'succeeded');
      if (view.state === 'succeeded') view.progress = { ...view.progress, done: view.progress.total ?? view.progress.done, percent: 100 };
    } catch (error) {
      view.state = stopped(controller.signal) ?? 'failed';
      if (view.state === 'failed') {
        view.error = (error as Error)?.message ?? String(error);
        this.logger.error(`${view.kind} job ${view.id} failed: ${view.error}`);
      }
    } finally {
      clearInterval(saver);
      view.finishedAt = new Date().toISOString();
      await this.save(view);
    }
    return structuredClone(view);
  }

  private async save(view: JobView): Promise<void> {
    await this.store.save(view).catch((error) => this.logger.warn(`could not save job ${view.id}: ${(error as Error).message}`));
  }
}

function stopped(signal: AbortSignal): JobState | undefined {
  if (!signal.aborted) return undefined;
  return signal.reason === SHUTDOWN ? 'interrupted' : 'cancelled';
}

function summarize(view: JobView, moves: PlannedMove[]): void {
  const plan = (view.plan ??= { keys: 0, bytes: 0, moves: [] });
  for (const move of moves) {
    plan.keys += 1;
    for (const to of move.to) {
      plan.bytes += move.size;
      let pair = plan.moves.find((m) => m.from === move.from && m.to === to);
      if (!pair) plan.moves.push((pair = { from: move.from, to, keys: 0, bytes: 0 }));
      pair.keys += 1;
      pair.bytes += move.size;
    }
  }
}
