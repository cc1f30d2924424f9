import { Injectable } from '@nestjs/common';
import { MkvConfig } from '../config/mkv-config';

export type VolumeState = 'up' | 'suspect' | 'down';

export interface VolumeStatus {
  url: string;
  state: VolumeState;
  lastCheckAt: string | null;
  lastLatencyMs: number | null;
  consecutiveFailures: number;
  lastError: string | null;
}

/** Probes in a row it takes to change a volume's state: one bad answer is noise. */
export const FAILURES_TO_DOWN = 2;
export const SUCCESSES_TO_UP = 2;

/**
 * What is known of each volume's health, fed by the background probes and by
 * requests, so no request pays for a health check. A volume is `up` until
 * proven otherwise (a CLI job, which runs no probes, trusts every volume); a
 * request that cannot reach it makes it `suspect` at once, which reads routes
 * around until the next probe decides.
 */
@Injectable()
export class VolumeHealth {
  private readonly volumes = new Map<string, VolumeStatus & { successes: number }>();

  constructor(config: MkvConfig) {
    for (const url of config.volumes) {
      this.volumes.set(url, {
        url,
        state: 'up',
        lastCheckAt: null,
        lastLatencyMs: null,
        consecutiveFailures: 0,
        lastError: null,
        successes: 0,
      });
    }
  }

  isUp(volume: string): boolean {
    return this.volumes.get(volume)?.state === 'up';
  }

  /** The first volume of the list that is up, in the list's order. */
  firstUp(volumes: readonly string[]): string | undefined {
    return volumes.find((volume) => this.isUp(volume));
  }

  /** Volumes known to be down; a suspect one is still tried. */
  isDown(volume: string): boolean {
    return this.volumes.get(volume)?.state === 'down';
  }

  upCount(): number {
    let count = 0;
    for (const status of this.volumes.values()) if (status.state === 'up') count++;
    return count;
  }

  recordProbe(volume: string, outcome: { latencyMs: number } | { error: string }): void {
    const status = this.volumes.get(volume);
    if (!status) return;
    status.lastCheckAt = new Date().toISOString();
    if ('error' in outcome) {
      status.lastError = outcome.error;
      status.consecutiveFailures++;
      status.successes = 0;
      if (status.consecutiveFailures >= FAILURES_TO_DOWN) status.state = 'down';
      return;
    }
    status.lastLatencyMs = outcome.latencyMs;
    status.consecutiveFailures = 0;
    status.successes++;
    if (status.state === 'suspect' || (status.state === 'down' && status.successes >= SUCCESSES_TO_UP)) status.state = 'up';
  }

  /** A request could not reach the volume: route around it until a probe says otherwise. */
  reportUnreachable(volume: string, error: string): void {
    const status = this.volumes.get(volume);
    if (!status || status.state === 'down') return;
    status.state = 'suspect';
    status.lastError = error;
    status.successes = 0;
  }

  statuses(): VolumeStatus[] {
    return [...this.volumes.values()].map(({ successes: _successes, ...status }) => ({ ...status }));
  }
}
