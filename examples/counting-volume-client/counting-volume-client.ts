import { Controller, Get, Global, Injectable, Module } from '@nestjs/common';
import { pipeline, Readable, Transform } from 'node:stream';
import { HttpVolumeClient, type MkvExtension, type VolumeClient, type VolumeEntry } from 'mkv';

/**
 * A VolumeClient decorator: every volume request goes to the stock nginx
 * client, and is counted on the way, with the bytes the volumes accepted.
 *
 * It cannot add a header to the volume requests: the VolumeClient interface
 * takes a URL, a body and a signal, not headers (they are the stock client's
 * business). A decorator that must change the requests themselves replaces
 * the client instead of wrapping it.
 */

type VolumeMethod = 'put' | 'move' | 'delete' | 'get' | 'list' | 'probe';

/** The counts, shared by the decorator and the controller that shows them. */
@Injectable()
export class VolumeRequestCounts {
  readonly requests: Record<VolumeMethod, number> = { put: 0, move: 0, delete: 0, get: 0, list: 0, probe: 0 };
  /** Bytes of the PUTs a volume answered with success (each replica counts). */
  bytesPut = 0;
}

@Injectable()
export class CountingVolumeClient implements VolumeClient {
  // The stock client is injected, not built here: it stays a Nest provider,
  // so Nest still closes its connection pools at shutdown.
  constructor(
    private readonly stock: HttpVolumeClient,
    private readonly counts: VolumeRequestCounts,
  ) {}

  async put(url: string, body: Readable | Buffer, options?: { length?: number; signal?: AbortSignal }): Promise<void> {
    this.counts.requests.put++;
    if (Buffer.isBuffer(body)) {
      await this.stock.put(url, body, options);
      this.counts.bytesPut += body.length;
      return;
    }
    let bytes = 0;
    await this.stock.put(url, countBytes(body, (n) => (bytes += n)), options);
    this.counts.bytesPut += bytes;
  }

  move(fromUrl: string, toUrl: string): Promise<void> {
    this.counts.requests.move++;
    return this.stock.move(fromUrl, toUrl);
  }

  delete(url: string): Promise<boolean> {
    this.counts.requests.delete++;
    return this.stock.delete(url);
  }

  get(url: string, options?: { signal?: AbortSignal }): Promise<{ body: Readable; size: number | undefined }> {
    this.counts.requests.get++;
    return this.stock.get(url, options);
  }

  list(url: string): AsyncIterable<VolumeEntry> {
    this.counts.requests.list++;
    return this.stock.list(url);
  }

  probe(volume: string, timeoutMs: number): Promise<void> {
    this.counts.requests.probe++;
    return this.stock.probe(volume, timeoutMs);
  }
}

/**
 * The body as the stock client reads it, counted chunk by chunk. pipeline
 * carries a failure either way: a source that breaks off fails the volume
 * request, and a volume request that ends early stops the source.
 */
function countBytes(body: Readable, onChunk: (bytes: number) => void): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      onChunk(chunk.length);
      done(null, chunk);
    },
  });
  pipeline(body, counter, () => undefined); // the failure is the volume request's to report
  return counter;
}

/** `GET /_admin/counting`: under /_admin, which no key can use, so no key is hidden by the route. */
@Controller('_admin/counting')
export class CountingController {
  constructor(private readonly counts: VolumeRequestCounts) {}

  @Get()
  show(): { requests: Record<VolumeMethod, number>; bytesPut: number } {
    return { requests: { ...this.counts.requests }, bytesPut: this.counts.bytesPut };
  }
}

/**
 * Global, so that mkv's own volumes module, where the decorator is built,
 * can inject the counts too.
 */
@Global()
@Module({ providers: [VolumeRequestCounts], exports: [VolumeRequestCounts], controllers: [CountingController] })
export class CountingModule {}

/** What `mkv serve --module` loads, or what a team spreads into createServer/MkvModule.forRoot. */
export const mkvExtension: MkvExtension = { imports: [CountingModule], volumeClient: CountingVolumeClient };
