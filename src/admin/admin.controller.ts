import { Controller, Delete, Get, Header, Param, Post, Query, Res } from '@nestjs/common';
import { ApiOperation, ApiProduces, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Readable } from 'node:stream';
import { strictQueryPipe } from '../common/query-validation';
import type { JobView } from './jobs/job';
import { JobsService } from './jobs/jobs.service';
import { RebalanceService } from './rebalance/rebalance.service';
import { rebuildNotSupported, RebuildService } from './rebuild/rebuild.service';
import { RebalanceQueryDto, RebuildQueryDto } from './admin-query.dto';

/** Long-running operations: start one (202 + Location), watch it, cancel it. */
@ApiTags('jobs')
@Controller('_admin')
export class AdminController {
  constructor(
    private readonly jobs: JobsService,
    private readonly rebuild: RebuildService,
    private readonly rebalance: RebalanceService,
  ) {}

  @Post('rebuild')
  @ApiOperation({ summary: 'Rebuild the index from the volumes; the serving index is swapped at the end' })
  @ApiResponse({ status: 202, description: 'The queued job; Location: /_admin/jobs/{id}' })
  @ApiResponse({ status: 409, description: 'a {kind} job is already running: {id}' })
  @ApiResponse({ status: 501, description: 'rebuild is not supported by this index' })
  async startRebuild(@Query(strictQueryPipe) _options: RebuildQueryDto, @Res({ passthrough: true }) reply: FastifyReply) {
    if (!this.rebuild.supported) throw rebuildNotSupported(); // refused up front: no job is queued to fail
    return accepted(reply, await this.jobs.start('rebuild', false, (run) => this.rebuild.run(run)));
  }

  @Post('rebalance')
  @ApiOperation({ summary: 'Move every key to the volumes its placement names; dryRun reports the plan only' })
  @ApiQuery({ name: 'dryRun', required: false, enum: ['true', 'false'] })
  @ApiQuery({ name: 'concurrency', required: false, description: 'keys moved at once, 1 to 64 (default 8)' })
  @ApiResponse({ status: 202, description: 'The queued job; Location: /_admin/jobs/{id}' })
  @ApiResponse({ status: 400, description: 'A bad or unknown query parameter' })
  @ApiResponse({ status: 409, description: 'a {kind} job is already running: {id}' })
  async startRebalance(@Query(strictQueryPipe) { dryRun = false, concurrency }: RebalanceQueryDto, @Res({ passthrough: true }) reply: FastifyReply) {
    return accepted(reply, await this.jobs.start('rebalance', dryRun, (run) => this.rebalance.run(run, { concurrency })));
  }

  @Get('jobs')
  @ApiOperation({ summary: 'The 50 newest jobs, newest first' })
  async listJobs() {
    return { jobs: await this.jobs.list() };
  }

  @Get('jobs/:id')
  @ApiOperation({ summary: 'A job: state, progress, counters, first errors, plan summary' })
  @ApiResponse({ status: 404, description: 'job {id} not found' })
  async getJob(@Param('id') id: string) {
    return this.jobs.get(id);
  }

  /** Cancels cooperatively: the job stops between keys, nothing half-moved. */
  @Delete('jobs/:id')
  @ApiOperation({ summary: 'Cancel a running job at its next safe point' })
  async cancelJob(@Param('id') id: string) {
    return this.jobs.cancel(id);
  }

  /** Every move a dry-run rebalance planned, one JSON object per line. */
  @Get('jobs/:id/plan')
  @Header('content-type', 'application/x-ndjson')
  @ApiOperation({ summary: "A dry run's planned moves, one JSON object per line: key, size, from, to, drop" })
  @ApiProduces('application/x-ndjson')
  async plan(@Param('id') id: string) {
    await this.jobs.get(id); // a 404 before the stream starts
    return Readable.from(ndjson(this.jobs.plan(id)));
  }
}

function accepted(reply: FastifyReply, job: JobView): JobView {
  reply.status(202).header('location', `/_admin/jobs/${job.id}`);
  return job;
}

async function* ndjson(items: AsyncIterable<unknown>): AsyncIterable<string> {
  for await (const item of items) yield `${JSON.stringify(item)}\n`;
}
