import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

/**
 * `totalBytes` of non-repeating data made on the fly, 1 MiB at a time, so a
 * test can send hundreds of MB without holding them; `md5()` is the digest of
 * what was produced so far.
 */
export class GeneratedBody extends Readable {
  private readonly block = randomBytes(1 << 20);
  private readonly hash = createHash('md5');
  private sent = 0;
  private digest?: string;

  constructor(
    readonly totalBytes: number,
    private readonly beforeChunk?: (sentBytes: number) => Promise<void> | void,
  ) {
    super();
  }

  override async _read(): Promise<void> {
    if (this.sent >= this.totalBytes) {
      this.push(null);
      return;
    }
    await this.beforeChunk?.(this.sent);
    const size = Math.min(this.block.length, this.totalBytes - this.sent);
    const chunk = Buffer.from(this.block.subarray(0, size));
    chunk.writeUInt32BE(this.sent / this.block.length, 0); // every MiB differs
    this.hash.update(chunk);
    this.sent += size;
    this.push(chunk);
  }

  md5(): string {
    this.digest ??= this.hash.digest('hex');
    return this.digest;
  }
}
