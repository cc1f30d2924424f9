import { Inject, Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { VolumeHealth } from '../health/volume-health.service';
import { KEY_INDEX, KeyIndex } from '../index/key-index';
import { JobsService } from '../admin/jobs/jobs.service';
import { valueWritten, ValueWrittenEvent } from './channels';
import { RequestMetrics } from './request-metrics';

/**
 * The server's Prometheus metrics, in a registry of its own (not prom-client's
 * global one, so two apps in one process do not share counters). Request
 * metrics come from one Fastify onResponse hook into plain counters
 * (RequestMetrics): no interceptor and no label hashing on the hot path.
 */
@Injectable()
export class MkvMetrics implements OnModuleInit, OnModuleDestroy {
  readonly registry = new Registry();
  private readonly requests = new RequestMetrics(this.registry);
  private readonly bytesWritten = new Counter({
    name: 'mkv_bytes_written_total',
    help: 'Bytes written to volumes by PUT (a value times its replicas)',
    registers: [this.registry],
  });
  private readonly onValueWritten = (event: unknown) => {
    const { size, replicas } = event as ValueWrittenEvent;
    this.bytesWritten.inc(size * replicas);
  };

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    health: VolumeHealth,
    @Inject(KEY_INDEX) index: KeyIndex,
    jobs: JobsService,
  ) {
    collectDefaultMetrics({ register: this.registry, prefix: 'mkv_process_' });
    new Gauge({
      name: 'mkv_volume_up',
      help: '1 when the volume answers its probes, 0 when it is down or suspect',
      labelNames: ['volume'] as const,
      registers: [this.registry],
      collect() {
        for (const status of health.statuses()) this.set({ volume: status.url }, status.state === 'up' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'mkv_volume_probe_seconds',
      help: 'Latency of the last successful probe',
      labelNames: ['volume'] as const,
      registers: [this.registry],
      collect() {
        for (const status of health.statuses()) if (status.lastLatencyMs !== null) this.set({ volume: status.url }, status.lastLatencyMs / 1000);
      },
    });
    new Gauge({
      name: 'mkv_index_keys',
      help: 'Keys in the index (live and unlinked)',
      registers: [this.registry],
      async collect() {
        this.set((await index.usage()).keys);
      },
    });
    new Gauge({
      name: 'mkv_index_bytes',
      help: 'Bytes of the values in the index, one replica each',
      registers: [this.registry],
      async collect() {
        this.set((await index.usage()).bytes);
      },
    });
    new Gauge({
      name: 'mkv_job_progress_ratio',
      help: 'Progress of the newest job of each kind in its current phase, 0 to 1',
      labelNames: ['kind', 'state'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const job of jobs.latestByKind()) this.set({ kind: job.kind, state: job.state }, job.progress.percent / 100);
      },
    });
    new Gauge({
      name: 'mkv_job_keys',
      help: 'Counters of the newest job of each kind',
      labelNames: ['kind', 'counter'] as const,
      registers: [this.registry],
      collect() {
        for (const job of jobs.latestByKind()) {
          for (const [counter, value] of Object.entries(job.counters)) this.set({ kind: job.kind, counter }, value);
        }
      },
    });
  }

  onModuleInit(): void {
    valueWritten.subscribe(this.onValueWritten);
    // Absent in a CLI job, which has no HTTP server.
    const fastify = this.adapterHost.httpAdapter?.getInstance<FastifyInstance>();
    fastify?.addHook('onResponse', (request, reply, done) => {
      this.requests.record(request.method, reply.statusCode, reply.elapsedTime / 1000);
      done();
    });
  }

  onModuleDestroy(): void {
    valueWritten.unsubscribe(this.onValueWritten);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
