import { Inject, Injectable } from '@nestjs/common';
import { IndexUsage, KEY_INDEX, KeyIndex } from './key-index';

/** A whole-index pass costs seconds on millions of keys: reports share one, at most this old. */
const MAX_AGE_MS = 10_000;

/** Keys and bytes per volume for /_admin/volumes and the metrics, computed at most every few seconds. */
@Injectable()
export class IndexUsageService {
  private cached?: { at: number; usage: Promise<IndexUsage> };

  constructor(@Inject(KEY_INDEX) private readonly index: KeyIndex) {}

  async usage(): Promise<IndexUsage> {
    if (!this.cached || Date.now() - this.cached.at > MAX_AGE_MS) {
      const usage = this.index.usage();
      this.cached = { at: Date.now(), usage };
      usage.catch(() => (this.cached = undefined)); // a failure is not cached
    }
    return this.cached.usage;
  }
}
