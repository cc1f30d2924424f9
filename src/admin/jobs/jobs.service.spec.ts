import { Test, TestingModule } from '@nestjs/testing';
import { DataSource } from 'typeorm';
import { MkvError, MkvErrorCode } from '../../common/mkv-error';
import { ConfigModule } from '../../config/config.module';
import { loadConfig } from '../../config/load-config';
import { SqliteIndexModule } from '../../index/sqlite/sqlite-index.module';
import type { JobView, PlannedMove } from './job';
import { JOB_STORE, JobStore } from './job-store';
import { JobRun, JobsService } from './jobs.service';
import { rejection } from '../../../test/support/rejection';


/** A promise the test settles by hand, to hold a runner at a known point. */
function deferred<T = void>(): { promise: Promise<T>; resolve(value: T): void; reject(error: unknown): void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** Resolves when the signal is aborted. */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function move(i: number, from = 'http://a:1', to = ['http://d:4']): PlannedMove {
  return { key: `k${String(i).padStart(5, '0')}`, size: i, from, to, drop: [] };
}

describe(JobsService.name, () => {
  let moduleRef: TestingModule;
  let jobs: JobsService;
  let store: JobStore;

  beforeEach(async () => {
    const config = loadConfig({ db: ':memory:', volumes: 'a:1,b:2,c:3', replicas: 2 });
    moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot(config), SqliteIndexModule],
      providers: [JobsService],
    }).compile();
    moduleRef.useLogger(false); // failed jobs log an error by design
    jobs = moduleRef.get(JobsService);
    store = moduleRef.get<JobStore>(JOB_STORE);
  });

  afterEach(async () => {
    await moduleRef.close();
  });

  /** Starts a job whose runner waits until the test releases it, and lets it reach `running`. */
  async function startHeld(runner: (run: JobRun) => Promise<void> = async () => undefined) {
    const entered = deferred<JobRun>();
    const release = deferred();
    const view = await jobs.start('rebalance', false, async (run) => {
      entered.resolve(run);
      await Promise.race([release.promise, aborted(run.signal)]);
      await runner(run);
    });
    const run = await entered.promise;
    return { view, run, release: () => release.resolve() };
  }

  describe('start', () => {
    it('returns the queued view at once, before the runner runs', async () => {
      let ran = false;
      const view = await jobs.start('rebuild', false, async () => {
        ran = true;
      });
      expect(ran).toBe(false);
      expect(view).toEqual({
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        kind: 'rebuild',
        dryRun: false,
        state: 'queued',
        progress: { phase: 'queued', done: 0, total: null, percent: 0 },
        counters: { scanned: 0, planned: 0, moved: 0, skipped: 0, failed: 0, bytes: 0 },
        errors: [],
        createdAt: expect.any(String),
        startedAt: null,
        finishedAt: null,
      });
      expect(Number.isNaN(Date.parse(view.createdAt))).toBe(false);
      await jobs.wait(view.id);
      expect(ran).toBe(true);
    });

    it('returns views that are snapshots, not the live job', async () => {
      const view = await jobs.start('rebuild', false, async (run) => {
        run.phase('working', 2);
        run.advance();
        run.count('scanned', 3);
        run.fail('k', 'broken');
      });
      const during = await jobs.get(view.id);
      await jobs.wait(view.id);
      expect(view.counters).toEqual({ scanned: 0, planned: 0, moved: 0, skipped: 0, failed: 0, bytes: 0 });
      expect(view.errors).toEqual([]);
      expect(view.progress.phase).toBe('queued');
      expect(during.state).not.toBe('failed');
      expect((await jobs.get(view.id)).errors).toEqual([{ key: 'k', message: 'broken' }]);
    });

    it('gives a dry-run rebalance an empty plan summary, and other jobs none', async () => {
      const dry = await jobs.start('rebalance', true, async () => undefined);
      expect(dry.plan).toEqual({ keys: 0, bytes: 0, moves: [] });
      await jobs.wait(dry.id);
      const real = await jobs.start('rebalance', false, async () => undefined);
      expect(real).not.toHaveProperty('plan');
      await jobs.wait(real.id);
      const rebuild = await jobs.start('rebuild', true, async () => undefined);
      expect(rebuild).not.toHaveProperty('plan');
      await jobs.wait(rebuild.id);
    });

    it('passes the job id and dry-run flag to the runner', async () => {
      let seen: Pick<JobRun, 'id' | 'dryRun'> | undefined;
      const view = await jobs.start('rebalance', true, async (run) => {
        seen = { id: run.id, dryRun: run.dryRun };
      });
      await jobs.wait(view.id);
      expect(seen).toEqual({ id: view.id, dryRun: true });
    });

    it('refuses a second job while one is running', async () => {
      const { view, release } = await startHeld();
      expect((await jobs.get(view.id)).state).toBe('running');

      const error = await rejection(jobs.start('rebuild', false, async () => undefined));
      expect(error).toBeInstanceOf(MkvError);
      expect([error.code, error.message]).toEqual([MkvErrorCode.JobConflict, `a rebalance job is already running: ${view.id}`]);
      expect(await jobs.list()).toHaveLength(1);

      release();
      await jobs.wait(view.id);
    });

    it('refuses a second job while the first is still queued', async () => {
      const starting = jobs.start('rebuild', false, async () => undefined);
      const second = rejection(jobs.start('rebalance', false, async () => undefined));
      const first = await starting;
      const error = await second;
      expect([error.code, error.message]).toEqual([MkvErrorCode.JobConflict, `a rebuild job is already running: ${first.id}`]);
      await jobs.wait(first.id);
      expect(await jobs.list()).toHaveLength(1);
    });

    it('a job that cannot be recorded at start rejects with a database error, never runs, and blocks no later job', async () => {
      // A real fault in the index, not a mock: a trigger refusing new job rows.
      const dataSource = moduleRef.get(DataSource);
      await dataSource.query(`CREATE TRIGGER refuse_jobs BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'injected failure'); END`);
      let ran = false;
      const error = await rejection(
        jobs.start('rebuild', false, async () => {
          ran = true;
        }),
      );
      expect(error).toBeInstanceOf(MkvError);
      expect([error.code, error.message]).toEqual([MkvErrorCode.DatabaseError, 'database error: injected failure']);
      await dataSource.query('DROP TRIGGER refuse_jobs');

      const next = await jobs.start('rebalance', false, async () => undefined);
      expect((await jobs.wait(next.id)).state).toBe('succeeded');
      expect(ran).toBe(false);
      expect((await jobs.list()).map((job) => [job.kind, job.state])).toEqual([['rebalance', 'succeeded']]);
      expect(jobs.latestByKind().map((job) => job.kind)).toEqual(['rebalance']);
    });

    it('accepts a new job once the previous one finished, whatever its end', async () => {
      const ok = await jobs.start('rebalance', false, async () => undefined);
      await jobs.wait(ok.id);
      const failing = await jobs.start('rebalance', false, async () => {
        throw new Error('boom');
      });
      await jobs.wait(failing.id);
      const { view: cancelled } = await startHeld();
      await jobs.cancel(cancelled.id);
      await jobs.wait(cancelled.id);

      const next = await jobs.start('rebuild', false, async () => undefined);
      expect((await jobs.wait(next.id)).state).toBe('succeeded');
    });
  });

  describe('reports', () => {
    it('show the phase, progress and counters in get() while the job runs', async () => {
      const { view, run, release } = await startHeld();
      run.phase('moving', 4);
      run.advance();
      run.advance(2);
      run.count('scanned', 3);
      run.count('moved');
      run.count('bytes', 1500);

      const running = await jobs.get(view.id);
      expect(running.state).toBe('running');
      expect(running.startedAt).toEqual(expect.any(String));
      expect(running.finishedAt).toBeNull();
      expect(running.progress).toEqual({ phase: 'moving', done: 3, total: 4, percent: 75 });
      expect(running.counters).toEqual({ scanned: 3, planned: 0, moved: 1, skipped: 0, failed: 0, bytes: 1500 });

      run.phase('second pass', null);
      run.advance(7);
      expect((await jobs.get(view.id)).progress).toEqual({ phase: 'second pass', done: 7, total: null, percent: 0 });

      release();
      await jobs.wait(view.id);
    });

    it('round percent down and never above 100', async () => {
      const { view, run, release } = await startHeld();
      run.phase('moving', 3);
      run.advance();
      expect((await jobs.get(view.id)).progress.percent).toBe(33);
      run.advance(5);
      expect((await jobs.get(view.id)).progress.percent).toBe(100);
      release();
      await jobs.wait(view.id);
    });

    it('keep each failure with its key and count it', async () => {
      const { view, run, release } = await startHeld();
      run.fail('a', 'copy failed');
      run.fail('b', 'unreachable');
      const running = await jobs.get(view.id);
      expect(running.counters.failed).toBe(2);
      expect(running.errors).toEqual([
        { key: 'a', message: 'copy failed' },
        { key: 'b', message: 'unreachable' },
      ]);
      release();
      await jobs.wait(view.id);
    });

    it('keep only the first 100 failures but count them all', async () => {
      const view = await jobs.start('rebalance', false, async (run) => {
        for (let i = 0; i < 150; i++) run.fail(`k${i}`, `failure ${i}`);
      });
      const final = await jobs.wait(view.id);
      expect(final.counters.failed).toBe(150);
      expect(final.errors).toHaveLength(100);
      expect(final.errors[0]).toEqual({ key: 'k0', message: 'failure 0' });
      expect(final.errors[99]).toEqual({ key: 'k99', message: 'failure 99' });
    });
  });

  describe('final state', () => {
    it('is succeeded when the runner returns without failures, with percent at 100', async () => {
      const view = await jobs.start('rebalance', false, async (run) => {
        run.phase('moving', 10);
        run.advance(4); // the last keys were skipped without advancing
        run.count('scanned', 10);
      });
      const final = await jobs.wait(view.id);
      expect(final.state).toBe('succeeded');
      expect(final.progress).toEqual({ phase: 'moving', done: 10, total: 10, percent: 100 });
      expect(final.error).toBeUndefined();
      expect(final.startedAt).toEqual(expect.any(String));
      expect(final.finishedAt).toEqual(expect.any(String));
      expect(Date.parse(final.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(final.startedAt!));
      expect(await jobs.get(view.id)).toEqual(final);
    });

    it('is succeeded with percent at 100 when the total was never known', async () => {
      const view = await jobs.start('rebuild', false, async (run) => {
        run.phase('ordering replicas', null);
        run.advance(3);
      });
      expect((await jobs.wait(view.id)).progress).toEqual({ phase: 'ordering replicas', done: 3, total: null, percent: 100 });
    });

    it('is failed with the message when the runner throws', async () => {
      const view = await jobs.start('rebuild', false, async (run) => {
        run.phase('listing volumes', 3);
        run.advance();
        throw new Error('GET http://a:1/: connection refused');
      });
      const final = await jobs.wait(view.id);
      expect(final.state).toBe('failed');
      expect(final.error).toBe('GET http://a:1/: connection refused');
      expect(final.progress).toEqual({ phase: 'listing volumes', done: 1, total: 3, percent: 33 });
      expect(final.finishedAt).toEqual(expect.any(String));
    });

    it('is failed, without a job error, when some keys failed', async () => {
      const view = await jobs.start('rebalance', false, async (run) => {
        run.phase('moving', 2);
        run.count('scanned', 2);
        run.count('moved');
        run.fail('k', 'no replica to copy from');
        run.advance(2);
      });
      const final = await jobs.wait(view.id);
      expect(final.state).toBe('failed');
      expect(final.error).toBeUndefined();
      expect(final.errors).toEqual([{ key: 'k', message: 'no replica to copy from' }]);
      expect(final.progress.percent).toBe(100); // all keys were looked at; the state tells the outcome
    });

    it('is cancelled when cancel() aborts the signal and the runner stops', async () => {
      let signal: AbortSignal | undefined;
      const { view, run } = await startHeld(async (r) => {
        signal = r.signal;
      });
      run.phase('moving', 10);
      run.advance(2);
      expect(run.signal.aborted).toBe(false);

      const answered = await jobs.cancel(view.id);
      expect(run.signal.aborted).toBe(true);
      expect(answered.id).toBe(view.id);

      const final = await jobs.wait(view.id);
      expect(signal?.aborted).toBe(true);
      expect(final.state).toBe('cancelled');
      expect(final.error).toBeUndefined();
      expect(final.progress).toEqual({ phase: 'moving', done: 2, total: 10, percent: 20 });
    });

    it('is cancelled, not failed, when the runner throws because it was aborted', async () => {
      const { view } = await startHeld(async (run) => {
        run.signal.throwIfAborted();
      });
      await jobs.cancel(view.id);
      const final = await jobs.wait(view.id);
      expect(final.state).toBe('cancelled');
      expect(final.error).toBeUndefined();
    });

    it('is left alone by cancel() once the job is over', async () => {
      const view = await jobs.start('rebalance', false, async () => undefined);
      const final = await jobs.wait(view.id);
      expect(await jobs.cancel(view.id)).toEqual(final);
      expect((await jobs.get(view.id)).state).toBe('succeeded');
    });

    it('is saved, so another JobsService over the same database sees it', async () => {
      const view = await jobs.start('rebalance', false, async (run) => {
        run.phase('moving', 1);
        run.count('scanned');
        run.count('moved');
        run.advance();
      });
      const final = await jobs.wait(view.id);
      const afterRestart = new JobsService(store);
      expect(await afterRestart.get(view.id)).toEqual(final);
      expect(await afterRestart.list()).toEqual([final]);
      await expect(afterRestart.wait(view.id)).resolves.toEqual(final);
    });
  });

  describe('get', () => {
    it('rejects an unknown job with NotFound', async () => {
      const error = await rejection(jobs.get('nope'));
      expect(error).toBeInstanceOf(MkvError);
      expect([error.code, error.message]).toEqual([MkvErrorCode.NotFound, 'job nope not found']);
    });

    it('rejects cancel() of an unknown job with NotFound', async () => {
      const error = await rejection(jobs.cancel('nope'));
      expect([error.code, error.message]).toEqual([MkvErrorCode.NotFound, 'job nope not found']);
    });
  });

  describe('list', () => {
    it('is empty before any job', async () => {
      expect(await jobs.list()).toEqual([]);
    });

    it('lists jobs newest first, a running one as it is now', async () => {
      const ids: string[] = [];
      for (const kind of ['rebuild', 'rebalance', 'rebuild'] as const) {
        const view = await jobs.start(kind, false, async () => undefined);
        await jobs.wait(view.id);
        ids.push(view.id);
        await sleep(3); // createdAt has millisecond resolution
      }
      const { view: running, run, release } = await startHeld();
      run.phase('moving', 5);
      ids.push(running.id);

      const listed = await jobs.list();
      expect(listed.map((v) => v.id)).toEqual([...ids].reverse());
      expect(listed.map((v) => v.state)).toEqual(['running', 'succeeded', 'succeeded', 'succeeded']);
      expect(listed[0].progress.phase).toBe('moving');
      expect((await jobs.list(2)).map((v) => v.id)).toEqual([ids[3], ids[2]]);

      release();
      await jobs.wait(running.id);
    });
  });

  describe('plan', () => {
    it('yields every planned move in order across pages, and sums them per volume pair', async () => {
      const moves = Array.from({ length: 2345 }, (_, i) =>
        i % 3 === 0 ? move(i, 'http://a:1', ['http://d:4']) : i % 3 === 1 ? move(i, 'http://b:2', ['http://d:4', 'http://c:3']) : move(i, 'http://a:1', ['http://c:3']),
      );
      const view = await jobs.start('rebalance', true, async (run) => {
        for (let i = 0; i < moves.length; i += 700) await run.plan(moves.slice(i, i + 700));
        await run.plan([]);
      });
      const final = await jobs.wait(view.id);
      expect(final.state).toBe('succeeded');

      const yielded: PlannedMove[] = [];
      for await (const planned of jobs.plan(view.id)) yielded.push(planned);
      expect(yielded).toHaveLength(2345);
      expect(yielded).toEqual(moves);

      const sum = (ms: PlannedMove[]) => ms.reduce((total, m) => total + m.size, 0);
      const aToD = moves.filter((_, i) => i % 3 === 0);
      const bToBoth = moves.filter((_, i) => i % 3 === 1);
      const aToC = moves.filter((_, i) => i % 3 === 2);
      expect(final.plan).toEqual({
        keys: 2345,
        bytes: sum(aToD) + 2 * sum(bToBoth) + sum(aToC),
        moves: [
          { from: 'http://a:1', to: 'http://d:4', keys: aToD.length, bytes: sum(aToD) },
          { from: 'http://b:2', to: 'http://d:4', keys: bToBoth.length, bytes: sum(bToBoth) },
          { from: 'http://b:2', to: 'http://c:3', keys: bToBoth.length, bytes: sum(bToBoth) },
          { from: 'http://a:1', to: 'http://c:3', keys: aToC.length, bytes: sum(aToC) },
        ],
      });
    });

    it('shows the plan summary while the dry run is still going', async () => {
      const entered = deferred();
      const release = deferred();
      const view = await jobs.start('rebalance', true, async (run) => {
        await run.plan([move(1), move(2)]);
        entered.resolve();
        await Promise.race([release.promise, aborted(run.signal)]);
      });
      await entered.promise;
      expect((await jobs.get(view.id)).plan).toEqual({
        keys: 2,
        bytes: 3,
        moves: [{ from: 'http://a:1', to: 'http://d:4', keys: 2, bytes: 3 }],
      });
      release.resolve();
      await jobs.wait(view.id);
    });

    it('keeps each job its own plan', async () => {
      const first = await jobs.start('rebalance', true, (run) => run.plan([move(1), move(2)]));
      await jobs.wait(first.id);
      const second = await jobs.start('rebalance', true, (run) => run.plan([move(3)]));
      await jobs.wait(second.id);

      const read = async (id: string) => {
        const out: PlannedMove[] = [];
        for await (const planned of jobs.plan(id)) out.push(planned);
        return out;
      };
      expect(await read(first.id)).toEqual([move(1), move(2)]);
      expect(await read(second.id)).toEqual([move(3)]);
    });

    it('is empty for a job that planned nothing, and NotFound for an unknown job', async () => {
      const view = await jobs.start('rebalance', false, async () => undefined);
      await jobs.wait(view.id);
      const out: PlannedMove[] = [];
      for await (const planned of jobs.plan(view.id)) out.push(planned);
      expect(out).toEqual([]);

      const error = await rejection((async () => {
        for await (const planned of jobs.plan('nope')) out.push(planned);
      })());
      expect([error.code, error.message]).toEqual([MkvErrorCode.NotFound, 'job nope not found']);
    });
  });

  describe('markInterrupted', () => {
    function storedView(id: string, state: JobView['state'], createdAt: string): JobView {
      return {
        id,
        kind: 'rebuild',
        dryRun: false,
        state,
        progress: { phase: 'listing volumes', done: 1, total: 3, percent: 33 },
        counters: { scanned: 7, planned: 0, moved: 0, skipped: 1, failed: 0, bytes: 0 },
        errors: [],
        createdAt,
        startedAt: state === 'queued' ? null : createdAt,
        finishedAt: state === 'succeeded' ? createdAt : null,
      };
    }

    it('marks the jobs a previous process left queued or running as interrupted', async () => {
      const running = storedView('running-job', 'running', '2025-01-01T00:00:01.000Z');
      const queued = storedView('queued-job', 'queued', '2025-01-01T00:00:02.000Z');
      const done = storedView('done-job', 'succeeded', '2025-01-01T00:00:00.000Z');
      for (const view of [running, queued, done]) await store.save(view);

      const before = Date.now();
      await jobs.markInterrupted();

      const afterRunning = await jobs.get('running-job');
      expect(afterRunning).toEqual({ ...running, state: 'interrupted', finishedAt: expect.any(String) });
      expect(Date.parse(afterRunning.finishedAt!)).toBeGreaterThanOrEqual(before - 1);
      expect(await jobs.get('queued-job')).toEqual({ ...queued, state: 'interrupted', finishedAt: expect.any(String) });
      expect(await jobs.get('done-job')).toEqual(done);
      expect((await jobs.list()).map((v) => [v.id, v.state])).toEqual([
        ['queued-job', 'interrupted'],
        ['running-job', 'interrupted'],
        ['done-job', 'succeeded'],
      ]);
    });

    it('does nothing when every job has ended', async () => {
      const done = storedView('done-job', 'failed', '2025-01-01T00:00:00.000Z');
      await store.save(done);
      await jobs.markInterrupted();
      expect(await jobs.list()).toEqual([done]);
    });

    it('lets a new job start after an interrupted one', async () => {
      await store.save(storedView('running-job', 'running', '2025-01-01T00:00:01.000Z'));
      await jobs.markInterrupted();
      const view = await jobs.start('rebuild', false, async () => undefined);
      expect((await jobs.wait(view.id)).state).toBe('succeeded');
    });
  });

  it('stops running jobs when the module closes and records them interrupted, not cancelled', async () => {
    let signal: AbortSignal | undefined;
    const { view } = await startHeld(async (run) => {
      signal = run.signal;
    });
    await moduleRef.close();
    expect(signal?.aborted).toBe(true);
    expect((await jobs.wait(view.id)).state).toBe('interrupted');
  });
});
