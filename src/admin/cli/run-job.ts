import { NestFactory } from '@nestjs/core';
import { NEST_START_OPTIONS, startNest } from '../../common/nest-start';
import { CoreModule } from '../../core.module';
import type { MkvModuleOptions } from '../../mkv-options';
import { IndexInUseError } from '../../index/index-in-use.error';
import type { JobKind, JobView } from '../jobs/job';
import { JobsService } from '../jobs/jobs.service';
import { RebalanceService } from '../rebalance/rebalance.service';
import { RebuildService } from '../rebuild/rebuild.service';

const LINE_EVERY_MS = 5000;
const BAR_EVERY_MS = 200;

/**
 * Runs a rebuild or rebalance in this process, on the same services the admin
 * API uses (with the same extensions), reporting progress on stderr (a bar on a terminal, a line every
 * few seconds otherwise) and a summary on stdout. Resolves with the exit
 * code: 0 when every key succeeded, 1 otherwise. Ctrl-C cancels at the next
 * safe point. Throws IndexInUseError while another mkv (a server) owns the index.
 */
export async function runJob(modules: MkvModuleOptions, kind: JobKind, options: { dryRun?: boolean; concurrency?: number } = {}): Promise<number> {
  const app = await startNest(() =>
    NestFactory.createApplicationContext(CoreModule.forRoot(modules), { logger: ['warn', 'error'], ...NEST_START_OPTIONS }),
  ).catch((error: unknown) => {
    // The server owns the index while it runs; its admin API runs the same job.
    if (error instanceof IndexInUseError) throw new IndexInUseError(error.db, error.ownerPid, `use POST /_admin/${kind} on the running server instead`);
    throw error;
  });
  app.flushLogs();
  try {
    const jobs = app.get(JobsService);
    const runner =
      kind === 'rebuild'
        ? app.get(RebuildService).run.bind(app.get(RebuildService))
        : (run: Parameters<RebalanceService['run']>[0]) => app.get(RebalanceService).run(run, { concurrency: options.concurrency });
    const started = await jobs.start(kind, options.dryRun ?? false, runner);
    const cancel = () => void jobs.cancel(started.id);
    process.once('SIGINT', cancel);
    const report = startReporting(jobs, started.id);
    const finished = await jobs.wait(started.id);
    report.stop(finished);
    process.removeListener('SIGINT', cancel);
    printSummary(finished);
    return finished.state === 'succeeded' ? 0 : 1;
  } finally {
    await app.close();
  }
}

function startReporting(jobs: JobsService, id: string): { stop(final: JobView): void } {
  const tty = process.stderr.isTTY === true;
  const show = (view: JobView) => {
    if (tty) process.stderr.write(`\r${bar(view)}\x1b[K`);
    else process.stderr.write(`${line(view)}\n`);
  };
  const timer = setInterval(() => void jobs.get(id).then(show), tty ? BAR_EVERY_MS : LINE_EVERY_MS);
  return {
    stop(final) {
      clearInterval(timer);
      show(final);
      if (tty) process.stderr.write('\n');
    },
  };
}

function bar(view: JobView): string {
  const { phase, done, total, percent } = view.progress;
  const width = 30;
  const filled = total ? Math.round((percent / 100) * width) : 0;
  const count = total ? `${done}/${total}` : `${done}`;
  return `${view.kind} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${percent}% ${phase} ${count}  ${counters(view)}`;
}

function line(view: JobView): string {
  const { phase, done, total, percent } = view.progress;
  return `${view.kind} ${view.state}: ${phase} ${done}${total ? `/${total} (${percent}%)` : ''}, ${counters(view)}`;
}

function counters(view: JobView): string {
  const c = view.counters;
  const moved = view.dryRun ? `${c.planned} to move` : `${c.moved} moved`;
  return `${c.scanned} scanned, ${moved}, ${c.skipped} skipped, ${c.failed} failed, ${c.bytes} bytes`;
}

function printSummary(view: JobView): void {
  const seconds = ((Date.parse(view.finishedAt!) - Date.parse(view.startedAt ?? view.createdAt)) / 1000).toFixed(1);
  const what = view.dryRun ? `${view.kind} (dry run)` : view.kind;
  console.log(`${what} ${view.state} in ${seconds} s: ${counters(view)}`);
  for (const move of view.plan?.moves ?? []) console.log(`  ${move.from} -> ${move.to}: ${move.keys} keys, ${move.bytes} bytes`);
  if (view.error) console.error(`error: ${view.error}`);
  for (const { key, message } of view.errors.slice(0, 20)) console.error(`failed: ${key}: ${message}`);
  if (view.counters.failed > 20) console.error(`... and ${view.counters.failed - 20} more (GET /_admin/jobs/${view.id})`);
}
