import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { VolumeHealth } from '../health/volume-health.service';
import { KeysService } from './keys.service';

/** How often undone blob deletes are retried, besides each time a volume comes back up. */
export const DELETE_RETRY_INTERVAL_MS = 60_000;
const RETRY_TIMER = 'pending-deletes-retry';

/**
 * Retries the blob deletes a down volume left undone (their blobs would
 * otherwise hold the key's path: `PUT k/child` gets 409 while a file `k`
 * is left) as soon as a volume comes back up, and every minute. The server's,
 * not the CLI's. Always in the background: start-up and requests never wait.
 */
@Injectable()
export class DeleteRetrier implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(DeleteRetrier.name);

  constructor(
    private readonly keys: KeysService,
    private readonly health: VolumeHealth,
    private readonly scheduler: SchedulerRegistry,
  ) {}

  onApplicationBootstrap(): void {
    this.health.onVolumeUp(() => this.retry());
    const timer = setInterval(() => this.retry(), DELETE_RETRY_INTERVAL_MS);
    timer.unref();
    this.scheduler.addInterval(RETRY_TIMER, timer);
  }

  onApplicationShutdown(): void {
    if (this.scheduler.doesExist('interval', RETRY_TIMER)) this.scheduler.deleteInterval(RETRY_TIMER);
  }

  /** Starts a pass (or asks the running one for another) without waiting for it. */
  retry(): void {
    this.keys.retryPendingDeletes().catch((error) => this.logger.warn(`retrying undone deletes failed: ${(error as Error).message}`));
  }
}
