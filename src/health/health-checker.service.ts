import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { MkvConfig } from '../config/mkv-config';
import { VOLUME_CLIENT, VolumeClient } from '../volumes/volume-client';
import { VolumeHealth } from './volume-health.service';

const PROBE_TIMER = 'volume-probes';
/** A probe that takes longer than this counts as failed. */
const MAX_PROBE_TIMEOUT_MS = 1000;

/** Probes every volume on an interval (`--health-interval`); the server's, not the CLI's. */
@Injectable()
export class HealthChecker implements OnApplicationBootstrap, OnApplicationShutdown {
  private probing = false;

  constructor(
    private readonly config: MkvConfig,
    private readonly health: VolumeHealth,
    private readonly scheduler: SchedulerRegistry,
    @Inject(VOLUME_CLIENT) private readonly volumes: VolumeClient,
  ) {}

  onApplicationBootstrap(): void {
    const intervalMs = this.config.healthInterval * 1000;
    const timer = setInterval(() => void this.probeAll(), intervalMs);
    timer.unref();
    this.scheduler.addInterval(PROBE_TIMER, timer);
    void this.probeAll();
  }

  onApplicationShutdown(): void {
    if (this.scheduler.doesExist('interval', PROBE_TIMER)) this.scheduler.deleteInterval(PROBE_TIMER);
  }

  /** One round of probes, all volumes at once; a round still running is not overlapped. */
  async probeAll(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    const timeoutMs = Math.min(MAX_PROBE_TIMEOUT_MS, this.config.healthInterval * 1000);
    try {
      await Promise.all(
        this.config.volumes.map(async (volume) => {
          const started = performance.now();
          try {
            await this.volumes.probe(volume, timeoutMs);
            this.health.recordProbe(volume, { latencyMs: Math.round((performance.now() - started) * 100) / 100 });
          } catch (error) {
            this.health.recordProbe(volume, { error: (error as Error).message });
          }
        }),
      );
    } finally {
      this.probing = false;
    }
  }
}
