import { Test, TestingModule } from '@nestjs/testing';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { InMemoryVolumeClient } from '../../test/support/in-memory-volume.client';
import { rejection } from '../../test/support/rejection';
import { MkvError, MkvErrorCode } from '../common/mkv-error';
import { ConfigModule } from '../config/config.module';
import { loadConfig } from '../config/load-config';
import { PLACEMENT } from '../hashing/placement';
import { RendezvousPlacement } from '../hashing/rendezvous-placement.service';
import { VolumeHealth } from '../health/volume-health.service';
import { ReplicaFiles } from '../replicas/replica-files.service';
import { VOLUME_CLIENT } from '../volumes/volume-client';
import { Md5Worker } from './md5-worker';
import { ReplicaUpload, SMALL_VALUE_BYTES } from './replica-upload';

const TARGETS = ['http://a:1', 'http://b:2'];
/** Any URL per volume: the caller (KeyWriter) chooses a temporary name or the key's own path. */
const DESTINATION = { volumes: TARGETS, urls: TARGETS.map((volume) => `${volume}/some/path`) };

/** A body that sends `sent`, then breaks off (the client went away mid-body). */
function brokenBody(sent: string): Readable {
  let done = false;
  return new Readable({
    read() {
      if (done) return this.destroy(new Error('aborted'));
      done = true;
      this.push(Buffer.from(sent));
    },
  });
}

/** A streamed body that sends `first`, then the rest only once `go` is called. */
function heldBody(first: Buffer, rest: Buffer): { body: Readable; go: () => void } {
  let step = 0;
  let go = () => undefined as void;
  const body = new Readable({
    read() {
      if (step === 0) this.push(first);
      else if (step === 1) go = () => void (this.push(rest), this.push(null));
      step++;
    },
  });
  return { body, go: () => go() };
}

describe(ReplicaUpload.name, () => {
  let moduleRef: TestingModule;
  let uploads: ReplicaUpload;
  let volumes: InMemoryVolumeClient;

  beforeEach(async () => {
    volumes = new InMemoryVolumeClient();
    moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot(loadConfig({ db: ':memory:', volumes: 'a:1,b:2', replicas: 2 }))],
      providers: [RendezvousPlacement, { provide: PLACEMENT, useExisting: RendezvousPlacement }, ReplicaFiles, Md5Worker, ReplicaUpload, VolumeHealth, { provide: VOLUME_CLIENT, useValue: volumes }],
    }).compile();
    moduleRef.useLogger(false);
    uploads = moduleRef.get(ReplicaUpload);
  });

  afterEach(async () => {
    await moduleRef.close();
  });

  it('fans one streamed body out to every target at the URL the caller gave, with its size and MD5', async () => {
    const chunks = ['x'.repeat(SMALL_VALUE_BYTES), 'y'.repeat(1000), 'end'];
    const whole = chunks.join('');
    const upload = await uploads.upload(Readable.from(chunks.map((chunk) => Buffer.from(chunk))), DESTINATION, whole.length);
    expect(upload).toEqual({ size: whole.length, md5: createHash('md5').update(whole).digest('hex') });
    expect(Object.fromEntries([...volumes.blobs].map(([url, bytes]) => [url, bytes.toString()]))).toEqual(
      Object.fromEntries(DESTINATION.urls.map((url) => [url, whole])),
    );
  });

  // A small value is read whole first: a body that breaks off never reaches a volume.
  it('a small body that breaks off: 400 "request body not received", no request to any volume', async () => {
    const error = await rejection(uploads.upload(brokenBody('part'), DESTINATION, 10));
    expect(error).toEqual(new MkvError(MkvErrorCode.InvalidRequest, 'request body not received: aborted'));
    expect(volumes.requests).toEqual([]);
  });

  it('a streamed body that breaks off: the same error, and no upload is left on any volume', async () => {
    const error = await rejection(uploads.upload(brokenBody('x'.repeat(1000)), DESTINATION, SMALL_VALUE_BYTES + 1));
    expect(error).toEqual(new MkvError(MkvErrorCode.InvalidRequest, 'request body not received: aborted'));
    expect(volumes.requests.filter((request) => request.startsWith('PUT '))).toHaveLength(2);
    expect(volumes.blobs.size).toBe(0);
  });

  // Failure: the MD5 worker thread dies mid-value. The PUT must not hang
  // nor store a value without its digest: a plain-text 500, uploads discarded.
  it('the MD5 worker stopping mid-stream: 500 "value digest failed", no upload left on any volume', async () => {
    const { body, go } = heldBody(Buffer.alloc(100_000, 1), Buffer.alloc(100_000, 2));
    const upload = uploads.upload(body, DESTINATION, 200_000);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the first chunk is in
    await moduleRef.get(Md5Worker).onApplicationShutdown();
    go();
    const error = await rejection(upload);
    expect(error).toBeInstanceOf(MkvError);
    expect(error).toMatchObject({ code: MkvErrorCode.DigestFailed, message: expect.stringMatching(/^value digest failed: MD5 worker stopped/) });
    expect(volumes.blobs.size).toBe(0);
  });

  it('concurrent streamed bodies each get the MD5 of their own bytes', async () => {
    const values = Array.from({ length: 6 }, (_, i) => Buffer.alloc(SMALL_VALUE_BYTES * 3 + i * 4099, i + 1));
    const results = await Promise.all(values.map((value) => uploads.upload(Readable.from([value.subarray(0, 70_000), value.subarray(70_000)]), DESTINATION, value.length)));
    expect(results.map((result) => result.md5)).toEqual(values.map((value) => createHash('md5').update(value).digest('hex')));
  });

  // Removing what reached the other volume is the caller's (it knows whether the URL is a temporary name or the key's path).
  it('a volume that fails the upload: 502 "not all volume writes succeeded"', async () => {
    volumes.failingPuts.set('http://b:2', 'after-body');
    const error = await rejection(uploads.upload(Readable.from([Buffer.from('hello')]), DESTINATION, undefined));
    expect(error).toEqual(new MkvError(MkvErrorCode.VolumeWriteFailed, 'not all volume writes succeeded'));
  });
});
