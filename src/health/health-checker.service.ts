import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { MkvConfig } from '../config/mkv-config';
import { VOLUME_CLIENT, VolumeClient, VolumeError } from '../volumes/volume-client';
import { VolumeHealth } from './volume-health.service';

/**
 * A probe that takes longer than this counts as failed (the volume is slow).
 * Each volume's probes never overlap, so it need not fit in the interval.
 */
export const PROBE_TIMEOUT_MS = 1000;

const probeTimer = (volume: string) => `volume-probe ${volume}`;

/**
 * Probes every volume on an interval (`--health-interval`); the server's, not
 * the CLI's. Each volume has its own timer: a volume that does not answer
 * holds up only its own next probe, never another volume's.
 */
@Injectable()
export class HealthChecker implements OnApplicationBootstrap, OnApplicationShutdown {
  /** The probe running for each volume; a tick that finds one is skipped. */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(
    private readonly config: MkvConfig,
    private readonly health: VolumeHealth,
    private readonly scheduler: SchedulerRegistry,
    @Inject(VOLUME_CLIENT) private readonly volumes: VolumeClient,
  ) {}

  onApplicationBootstrap(): void {
    const intervalMs = this.config.healthInterval * 1000;
    for (const volume of this.config.volumes) {
      const timer = setInterval(() => {
        if (!this.inFlight.has(volume)) void this.probe(volume);
      }, intervalMs);
      timer.unref();
      this.scheduler.addInterval(probeTimer(volume), timer);
      void this.probe(volume);
    }
  }

  onApplicationShutdown(): void {
    for (const volume of this.config.volumes) {
      if (this.scheduler.doesExist('interval', probeTimer(volume))) this.scheduler.deleteInterval(probeTimer(volume));
    }
  }

  /** Probes every volume now, each once more after any probe of it still running; resolves when all have answered or timed out. */
  async probeAll(): Promise<void> {
    await Promise.all(
      this.config.volumes.map(async (volume) => {
        await this.inFlight.get(volume);
        await this.probe(volume);
      }),
    );
  }

  private probe(volume: string): Promise<void> {
    const probing = this.probeOnce(volume).finally(() => {
      if (this.inFlight.get(volume) === probing) this.inFlight.delete(volume);
    });
    this.inFlight.set(volume, probing);
    return probing;
  }

  private async probeOnce(volume: string): Promise<void> {
    const started = performance.now();
    try {
      await this.volumes.probe(volume, PROBE_TIMEOUT_MS);
      this.health.recordProbe(volume, { latencyMs: Math.round((performance.now() - started) * 100) / 100 });
    } catch (error) {
      const timedOut = error instanceof VolumeError && error.timedOut;
      this.health.recordProbe(volume, { error: (error as Error).message, timedOut });
    }
  }
}
