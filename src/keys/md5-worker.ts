import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Worker } from 'node:worker_threads';
import { MkvError, MkvErrorCode } from '../common/mkv-error';

/**
 * Each value being hashed has a ring of slots in memory shared with the
 * worker: the event loop copies chunks into a slot and sends only its number
 * (a message carrying the bytes, even transferred, made V8 count every batch
 * as new external memory and start full GCs). A slot is allocated when first
 * needed: a client that stalls after its first chunk holds one slot.
 */
export const MD5_SLOT_BYTES = 256 * 1024;
/**
 * Slots per value (at most 1 MiB). When every slot waits in the worker, the
 * value waits too, as for a slow volume: a slow hasher never makes the body
 * pile up in memory.
 */
const MD5_SLOTS = 4;

/**
 * The worker's code, run from a string (`eval`): it works the same from
 * dist and under ts-jest, where no compiled file sits next to this one.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (message) => {
  const { id, op } = message;
  if (op === 'slot') {
    if (!hashes.has(id)) hashes.set(id, { md5: createHash('md5'), slots: [] });
    hashes.get(id).slots[message.slot] = new Uint8Array(message.memory);
  } else if (op === 'data') {
    const { md5, slots } = hashes.get(id);
    md5.update(slots[message.slot].subarray(0, message.length));
    parentPort.postMessage({ id, op });
  } else if (op === 'end') {
    const { md5 } = hashes.get(id);
    hashes.delete(id);
    parentPort.postMessage({ id, op, md5: md5.digest('hex') });
  } else if (op === 'drop') {
    hashes.delete(id);
  }
});
`;

type Reply = { id: number; op: 'data' } | { id: number; op: 'end'; md5: string };

/**
 * The MD5 of streamed values, computed on a worker thread: on the event
 * loop's thread it cost about 0.45 s per 256 MiB, a third of a streamed
 * PUT's CPU. One long-lived worker per process, shared by every upload (each
 * hash has an id). The worker failing or exiting fails every digest in
 * progress with a DigestFailed error, never leaves one waiting; the next
 * value starts a new worker.
 */
@Injectable()
export class Md5Worker implements OnApplicationShutdown {
  private worker: Worker | undefined;
  private readonly digests = new Map<number, StreamMd5>();
  private nextId = 1;

  /** A new digest of a value whose bytes come in order through `update`. */
  begin(): StreamMd5 {
    const id = this.nextId++;
    const digest: StreamMd5 = new StreamMd5(id, (message) => this.post(digest, message), () => this.digests.delete(id));
    this.digests.set(id, digest);
    return digest;
  }

  async onApplicationShutdown(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  /** A digest's bytes all go to the worker that got its first ones. */
  private post(digest: StreamMd5, message: object): void {
    digest.worker ??= this.started();
    digest.worker.postMessage(message);
  }

  private started(): Worker {
    if (this.worker !== undefined) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    // Never what keeps a process (a CLI job) alive.
    worker.unref();
    worker.on('message', (reply: Reply) => this.digests.get(reply.id)?.answer(reply));
    worker.on('error', (error) => this.stopped(worker, `MD5 worker failed: ${error.message}`));
    worker.on('exit', (code) => this.stopped(worker, `MD5 worker stopped (exit code ${code})`));
    this.worker = worker;
    return worker;
  }

  /** Every digest the worker held fails; a later value gets a new worker. */
  private stopped(worker: Worker, reason: string): void {
    if (this.worker === worker) this.worker = undefined;
    const failed = [...this.digests.values()].filter((digest) => digest.worker === worker);
    for (const digest of failed) digest.fail(new MkvError(MkvErrorCode.DigestFailed, `value digest failed: ${reason}`));
  }
}

/**
 * One value's MD5 in the making. `update` copies the chunk into the value's
 * ring (the caller's Buffer goes on to the volumes untouched) and answers a
 * promise when the ring is full: the caller reads no more until the worker
 * has caught up. `digest` answers the hex MD5 once every byte is hashed.
 */
export class StreamMd5 {
  /** The worker this digest's bytes went to (set by Md5Worker with the first message). */
  worker: Worker | undefined;
  private readonly slots: Uint8Array[] = [];
  private filled = 0;
  /** Slots sent to the worker, and slots it has hashed: the slot being filled is `sent % MD5_SLOTS`. */
  private sent = 0;
  private hashed = 0;
  /** A chunk not yet copied whole for want of a free slot, and its caller waiting. */
  private pending: { chunk: Uint8Array; offset: number; resolve: () => void; reject: (error: unknown) => void } | undefined;
  private result: { resolve: (md5: string) => void; reject: (error: unknown) => void } | undefined;
  private failure: unknown;
  private done = false;

  constructor(
    readonly id: number,
    private readonly send: (message: object) => void,
    private readonly release: () => void,
  ) {}

  update(chunk: Uint8Array): Promise<void> | undefined {
    if (this.failure !== undefined) throw this.failure;
    const offset = this.copy(chunk, 0);
    if (offset === chunk.length && this.slotFree()) return undefined;
    return new Promise((resolve, reject) => (this.pending = { chunk, offset, resolve, reject }));
  }

  digest(): Promise<string> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.filled > 0) this.flush();
    this.done = true;
    return new Promise((resolve, reject) => {
      this.result = { resolve, reject };
      // A value with no byte to hash never told the worker about itself.
      if (this.sent === 0) {
        this.release();
        resolve(EMPTY_MD5);
      } else {
        this.post({ id: this.id, op: 'end' });
      }
    });
  }

  /** The value will not be stored: the worker forgets its hash. */
  abandon(): void {
    if (this.done) return;
    this.done = true;
    this.release();
    if (this.failure !== undefined || this.worker === undefined) return;
    try {
      this.send({ id: this.id, op: 'drop' });
    } catch {
      // A worker that cannot take the message holds no hash worth dropping.
    }
  }

  /** Called by Md5Worker with the worker's answers. */
  answer(reply: Reply): void {
    if (reply.op === 'end') {
      this.release();
      this.result?.resolve(reply.md5);
      return;
    }
    this.hashed++;
    const pending = this.pending;
    if (pending === undefined) return;
    try {
      pending.offset = this.copy(pending.chunk, pending.offset);
    } catch (error) {
      pending.reject(error);
      return;
    }
    if (pending.offset === pending.chunk.length && this.slotFree()) {
      this.pending = undefined;
      pending.resolve();
    }
  }

  /** Called by Md5Worker when its worker is gone. */
  fail(error: MkvError): void {
    this.failure ??= error;
    this.release();
    this.pending?.reject(error);
    this.result?.reject(error);
    this.pending = this.result = undefined;
  }

  private slotFree(): boolean {
    return this.sent - this.hashed < MD5_SLOTS;
  }

  /** Copies from `offset` while a slot is free; answers how far it got. */
  private copy(chunk: Uint8Array, offset: number): number {
    while (offset < chunk.length && this.slotFree()) {
      const taken = Math.min(chunk.length - offset, MD5_SLOT_BYTES - this.filled);
      this.slot(this.sent % MD5_SLOTS).set(chunk.subarray(offset, offset + taken), this.filled);
      this.filled += taken;
      offset += taken;
      if (this.filled === MD5_SLOT_BYTES) this.flush();
    }
    return offset;
  }

  private slot(index: number): Uint8Array {
    let slot = this.slots[index];
    if (slot === undefined) {
      const memory = new SharedArrayBuffer(MD5_SLOT_BYTES);
      this.post({ id: this.id, op: 'slot', slot: index, memory });
      slot = this.slots[index] = new Uint8Array(memory);
    }
    return slot;
  }

  private flush(): void {
    this.post({ id: this.id, op: 'data', slot: this.sent % MD5_SLOTS, length: this.filled });
    this.sent++;
    this.filled = 0;
  }

  private post(message: object): void {
    try {
      this.send(message);
    } catch (error) {
      this.fail(new MkvError(MkvErrorCode.DigestFailed, `value digest failed: ${(error as Error).message}`));
      throw this.failure;
    }
  }
}

const EMPTY_MD5 = 'd41d8cd98f00b204e9800998ecf8427e';
