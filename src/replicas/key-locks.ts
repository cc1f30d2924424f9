import { Injectable } from '@nestjs/common';

/**
 * Serializes the changes to one key (PUT's commit, DELETE, UNLINK, and later
 * the rebalance of that key) inside this process, so replicas never disagree
 * with each other or with the index. One mkv server owns one index file.
 */
@Injectable()
export class KeyLocks {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous ? previous.then(() => mine) : mine;
    this.tails.set(key, tail);
    if (previous) await previous;
    try {
      return await work();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Keys with a change running or waiting (for tests and diagnostics). */
  get size(): number {
    return this.tails.size;
  }
}
