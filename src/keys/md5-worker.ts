import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Worker } from 'node:worker_threads';
import { MkvError, MkvErrorCode } from '../common/mkv-error';

/**
 * Each value being hashed has a ring of slots in memory shared with the
 * worker, into which the event loop copies its chunks (one memcpy). Batches
 * sent as transferred ArrayBuffers instead cost the event loop more time in
 * postMessage and garbage collection than the hashing they moved off. A slot
 * is allocated when first needed: a client that stalls after its first chunk
 * holds one slot.
 */
export const MD5_SLOT_BYTES = 256 * 1024;
/**
 * Slots per value (at most 1 MiB). When every slot waits in the worker, the
 * value waits too, as for a slow volume: a slow hasher never makes the body
 * pile up in memory.
 */
const MD5_SLOTS = 4;

/** The words of a value's control block, shared with the worker. */
const SENT = 0; // full slots handed to the worker (written by the event loop)
const HASHED = 1; // slots the worker has hashed (written by the worker)
const PARKED = 2; // 1 while the worker is not draining this value: the next slot must wake it with a message
const WAITING = 3; // 1 while the event loop waits for a free slot: the worker must answer 'room'

/**
 * The worker's code, run from a string (`eval`): it works the same from
 * dist and under ts-jest, where no compiled file sits next to this one.
 * Slots travel through the control block, not messages: while the worker
 * keeps up it is told nothing and answers nothing (each message wakes a
 * thread, which on a loaded machine costs more than the bytes). It drains a
 * value at most MD5_SLOTS slots at a time, so other values get their turn.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const [SLOTS, SENT, HASHED, PARKED, WAITING] = [${MD5_SLOTS}, ${SENT}, ${HASHED}, ${PARKED}, ${WAITING}];
const values = new Map();
function drain(id, value) {
  const { control, slots, md5 } = value;
  for (let turn = 0; ; ) {
    while (value.hashed < Atomics.load(control, SENT)) {
      if (turn++ === SLOTS) return void setImmediate(() => values.get(id) === value && drain(id, value));
      const slot = slots[value.hashed % SLOTS];
      // Its memory is in a message not read yet, which drains again.
      if (slot === undefined) return;
      md5.update(slot);
      Atomics.store(control, HASHED, ++value.hashed);
      if (Atomics.compareExchange(control, WAITING, 1, 0) === 1) parentPort.postMessage({ id, op: 'room' });
    }
    Atomics.store(control, PARKED, 1);
    // A slot handed over after the check above and before PARKED was set woke no one: take it now.
    if (value.hashed === Atomics.load(control, SENT) || Atomics.compareExchange(control, PARKED, 1, 0) !== 1) return;
  }
}
parentPort.on('message', (message) => {
  const { id, op } = message;
  if (op === 'begin') {
    values.set(id, { control: new Int32Array(message.control), slots: [], md5: createHash('md5'), hashed: 0 });
  } else if (op === 'slot') {
    const value = values.get(id);
    value.slots[message.slot] = new Uint8Array(message.memory);
    drain(id, value);
  } else if (op === 'wake') {
    const value = values.get(id);
    if (value !== undefined) drain(id, value);
  } else if (op === 'end') {
    const value = values.get(id);
    values.delete(id);
    while (value.hashed < message.sent) value.md5.update(value.slots[value.hashed++ % SLOTS]);
    if (message.tail > 0) value.md5.update(value.slots[value.hashed % SLOTS].subarray(0, message.tail));
    parentPort.postMessage({ id, op, md5: value.md5.digest('hex') });
  } else if (op === 'drop') {
    values.delete(id);
  }
});
`;

type Reply = { id: number; op: 'room' } | { id: number; op: 'end'; md5: string };

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
  private control: Int32Array | undefined;
  private filled = 0;
  /** Full slots handed to the worker: the slot being filled is `sent % MD5_SLOTS`. */
  private sent = 0;
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
    if (this.control === undefined) {
      const memory = new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT);
      this.control = new Int32Array(memory);
      this.control[PARKED] = 1;
      this.post({ id: this.id, op: 'begin', control: memory });
    }
    const work = { chunk, offset: 0 };
    if (this.fill(work)) return undefined;
    return new Promise((resolve, reject) => (this.pending = { ...work, resolve, reject }));
  }

  digest(): Promise<string> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    this.done = true;
    return new Promise((resolve, reject) => {
      this.result = { resolve, reject };
      // A value with no byte to hash never told the worker about itself.
      if (this.control === undefined) {
        this.release();
        resolve(EMPTY_MD5);
      } else {
        // The slot being filled goes with the message: it is never handed over as full.
        this.post({ id: this.id, op: 'end', sent: this.sent, tail: this.filled });
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
    const pending = this.pending;
    if (pending === undefined) return; // room found before the worker's answer came
    let filled: boolean;
    try {
      filled = this.fill(pending);
    } catch (error) {
      this.pending = undefined;
      pending.reject(error);
      return;
    }
    if (filled) {
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
    return this.sent - Atomics.load(this.control!, HASHED) < MD5_SLOTS;
  }

  /**
   * A free slot now, or else a promise of the worker's 'room' answer. The
   * second look after raising WAITING catches a slot freed in between (whose
   * worker saw no one waiting); a 'room' answer that then comes anyway finds
   * nothing pending and is ignored.
   */
  private hasRoom(): boolean {
    if (this.slotFree()) return true;
    Atomics.store(this.control!, WAITING, 1);
    if (!this.slotFree()) return false;
    Atomics.store(this.control!, WAITING, 0);
    return true;
  }

  /**
   * Copies the rest of a chunk while there is room. True once it is all
   * copied and a slot is free for the next chunk; false when the ring is
   * full, the worker then asked for a 'room' answer (which calls this again).
   */
  private fill(work: { chunk: Uint8Array; offset: number }): boolean {
    for (;;) {
      work.offset = this.copy(work.chunk, work.offset);
      if (!this.hasRoom()) return false;
      if (work.offset === work.chunk.length) return true;
    }
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

  /** Hands the full slot to the worker; a message only when the worker is not draining this value. */
  private flush(): void {
    Atomics.store(this.control!, SENT, ++this.sent);
    this.filled = 0;
    if (Atomics.compareExchange(this.control!, PARKED, 1, 0) === 1) this.post({ id: this.id, op: 'wake' });
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
