import { createHash, randomBytes } from 'node:crypto';
import { rejection } from '../../test/support/rejection';
import { MkvError, MkvErrorCode } from '../common/mkv-error';
import { MD5_SLOT_BYTES, Md5Worker, StreamMd5 } from './md5-worker';

const md5Of = (bytes: Buffer) => createHash('md5').update(bytes).digest('hex');

/** Feeds `value` in chunks of the given sizes (cycled), waiting whenever the hasher asks to. */
async function feed(digest: StreamMd5, value: Buffer, sizes: number[]): Promise<void> {
  for (let offset = 0, i = 0; offset < value.length; i++) {
    const end = Math.min(value.length, offset + sizes[i % sizes.length]);
    await digest.update(value.subarray(offset, end));
    offset = end;
  }
}

describe(Md5Worker.name, () => {
  let hasher: Md5Worker;

  beforeEach(() => (hasher = new Md5Worker()));
  afterEach(() => hasher.onApplicationShutdown());

  it('the digest of a value fed in uneven chunks across many slots is the MD5 of its bytes', async () => {
    // More bytes than the ring holds, in chunks that straddle slot boundaries.
    const value = randomBytes(9 * MD5_SLOT_BYTES + 12345);
    const digest = hasher.begin();
    await feed(digest, value, [65536, 1, 300_000, MD5_SLOT_BYTES, 3 * MD5_SLOT_BYTES + 7]);
    expect(await digest.digest()).toBe(md5Of(value));
  });

  it('a value of no bytes has the MD5 of the empty string', async () => {
    expect(await hasher.begin().digest()).toBe(md5Of(Buffer.alloc(0)));
  });

  it('concurrent values, their chunks interleaved, each get their own digest', async () => {
    const values = Array.from({ length: 12 }, (_, i) => randomBytes(MD5_SLOT_BYTES * (1 + (i % 4)) + i * 1000));
    const digests = await Promise.all(
      values.map(async (value, i) => {
        const digest = hasher.begin();
        await feed(digest, value, [16384 + i * 997]);
        return digest.digest();
      }),
    );
    expect(digests).toEqual(values.map(md5Of));
  });

  it('the chunk handed in is copied: changing it afterwards does not change the digest', async () => {
    const value = randomBytes(3 * MD5_SLOT_BYTES);
    const chunk = Buffer.from(value);
    const digest = hasher.begin();
    await digest.update(chunk);
    chunk.fill(0);
    expect(await digest.digest()).toBe(md5Of(value));
  });

  // Failure: the worker thread dies while values are being hashed. Every
  // digest in progress fails with a clear error instead of waiting forever,
  // and the next value is hashed by a new worker.
  it('a worker that stops fails every digest in progress, and the next value gets a new worker', async () => {
    const waiting = hasher.begin();
    await waiting.update(randomBytes(1000));
    const pending = waiting.digest();
    const midway = hasher.begin();
    await midway.update(randomBytes(1000));

    await hasher.onApplicationShutdown();

    const failure = await rejection(pending);
    expect(failure).toBeInstanceOf(MkvError);
    expect(failure).toMatchObject({ code: MkvErrorCode.DigestFailed, message: expect.stringMatching(/^value digest failed: MD5 worker stopped \(exit code \d+\)$/) });
    expect(() => midway.update(randomBytes(10))).toThrow(failure as MkvError);
    expect(await rejection(midway.digest())).toEqual(failure);

    const value = randomBytes(2 * MD5_SLOT_BYTES + 5);
    const next = hasher.begin();
    await feed(next, value, [65536]);
    expect(await next.digest()).toBe(md5Of(value));
  });

  it('a value abandoned halfway leaves the worker hashing others right', async () => {
    const dropped = hasher.begin();
    await dropped.update(randomBytes(MD5_SLOT_BYTES + 1));
    dropped.abandon();
    const value = randomBytes(MD5_SLOT_BYTES * 2);
    const kept = hasher.begin();
    await feed(kept, value, [100_000]);
    expect(await kept.digest()).toBe(md5Of(value));
  });
});
