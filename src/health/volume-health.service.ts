import { Injectable } from '@nestjs/common';
import { MkvConfig } from '../config/mkv-config';

/**
 * `slow`: the last probes got no answer in time (the volume may be alive,
 * under load); `down`: they were refused, reset or answered 5xx (dead).
 */
export type VolumeState = 'up' | 'suspect' | 'slow' | 'down';

export interface VolumeStatus {
  url: string;
  state: VolumeState;
  lastCheckAt: string | null;
  lastLatencyMs: number | null;
  consecutiveFailures: number;
  lastError: string | null;
}

export type ProbeOutcome = { latencyMs: number } | { error: string; timedOut: boolean };

/** Probes in a row it takes to change a volume's state: one bad answer is noise. */
export const FAILURES_TO_DOWN = 2;
export const SUCCESSES_TO_UP = 2;

/**
 * What is known of each volume's health, fed by the background probes and by
 * requests, so no request pays for a health check. A volume is `up` until
 * proven otherwise (a CLI job, which runs no probes, trusts every volume); a
 * request that cannot reach it makes it `suspect` at once, which reads routes
 * around until the next probe decides. Failed probes in a row make it `slow`
 * or `down`, as the last one timed out or was refused.
 */
@Injectable()
export class VolumeHealth {
  private readonly volumes = new Map<string, VolumeStatus & { successes: number }>();
  private readonly upListeners: ((volume: string) => void)[] = [];

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

  /**
   * The replica a read is sent to: the first that is up, else the first that
   * is only slow or suspect (a redirect to a slow volume beats a refusal);
   * undefined when every one is down.
   */
  readableReplica(volumes: readonly string[]): string | undefined {
    return volumes.find((volume) => this.isUp(volume)) ?? volumes.find((volume) => !this.isDown(volume));
  }

  /** Volumes known to be dead (refused, reset, 5xx); a slow or suspect one is still tried. */
  isDown(volume: string): boolean {
    return this.volumes.get(volume)?.state === 'down';
  }

  /** False while the probes find the volume down or slow: work that can wait should. An unknown volume may be tried. */
  mayReach(volume: string): boolean {
    const state = this.volumes.get(volume)?.state;
    return state !== 'down' && state !== 'slow';
  }

  upCount(): number {
    let count = 0;
    for (const status of this.volumes.values()) if (status.state === 'up') count++;
    return count;
  }

  /** Called with a volume's URL each time it comes (back) up. */
  onVolumeUp(listener: (volume: string) => void): void {
    this.upListeners.push(listener);
  }

  recordProbe(volume: string, outcome: ProbeOutcome): void {
    const status = this.volumes.get(volume);
    if (!status) return;
    status.lastCheckAt = new Date().toISOString();
    if ('error' in outcome) {
      status.lastError = outcome.error;
      status.consecutiveFailures++;
      status.successes = 0;
      if (status.consecutiveFailures >= FAILURES_TO_DOWN) status.state = outcome.timedOut ? 'slow' : 'down';
      return;
    }
    status.lastLatencyMs = outcome.latencyMs;
    status.consecutiveFailures = 0;
    status.successes++;
    if (status.state === 'up' || (status.state !== 'suspect' && status.successes < SUCCESSES_TO_UP)) return;
    status.state = 'up';
    for (const listener of this.upListeners) listener(volume);
  }

  /** A request could not reach the volume: route around it until a probe says otherwise. */
  reportUnreachable(volume: string, error: string): void {
    const status = this.volumes.get(volume);
    if (!status || (status.state !== 'up' && status.state !== 'suspect')) return;
    status.state = 'suspect';
    status.lastError = error;
    status.successes = 0;
  }

  statuses(): VolumeStatus[] {
    return [...this.volumes.values()].map(({ successes: _successes, ...status }) => ({ ...status }));
  }
}
