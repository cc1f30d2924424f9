import { SchedulerRegistry } from '@nestjs/schedule';
import { loadConfig } from '../config/load-config';
import { VolumeHealth } from '../health/volume-health.service';
import { DELETE_RETRY_INTERVAL_MS, DeleteRetrier } from './delete-retrier.service';
import type { KeysService } from './keys.service';

/** Issue 10: undone deletes were retried only at start; now when a volume comes back up and every minute. */
describe(DeleteRetrier.name, () => {
  let health: VolumeHealth;
  let passes: number;
  let retrier: DeleteRetrier;

  beforeEach(() => {
    jest.useFakeTimers();
    health = new VolumeHealth(loadConfig({ db: ':memory:', volumes: 'a:1,b:2', replicas: 1 }));
    passes = 0;
    const keys = { retryPendingDeletes: async () => void passes++ } as unknown as KeysService;
    retrier = new DeleteRetrier(keys, health, new SchedulerRegistry());
    retrier.onApplicationBootstrap();
  });

  afterEach(() => {
    retrier.onApplicationShutdown();
    jest.useRealTimers();
  });

  it('starts a pass when a down volume comes back up, not on every good probe', () => {
    const refused = { error: 'connect ECONNREFUSED', timedOut: false };
    health.recordProbe('http://a:1', { latencyMs: 1 });
    health.recordProbe('http://a:1', refused);
    health.recordProbe('http://a:1', refused);
    expect(passes).toBe(0);
    health.recordProbe('http://a:1', { latencyMs: 1 });
    health.recordProbe('http://a:1', { latencyMs: 1 });
    expect(passes).toBe(1);
  });

  it('starts a pass every minute', () => {
    jest.advanceTimersByTime(DELETE_RETRY_INTERVAL_MS - 1);
    expect(passes).toBe(0);
    jest.advanceTimersByTime(1);
    expect(passes).toBe(1);
    jest.advanceTimersByTime(DELETE_RETRY_INTERVAL_MS);
    expect(passes).toBe(2);
  });
});
