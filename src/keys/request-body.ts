import type { Readable } from 'node:stream';

/** No byte of a request body arrived for the configured time while the server waited for one. */
export class BodyTimeoutError extends Error {
  constructor(readonly seconds: number) {
    super(`nothing received for ${seconds} s`);
    this.name = 'BodyTimeoutError';
  }
}

/**
 * Reads a request body to its end, handing each chunk to `onChunk`. While a
 * promise `onChunk` returned is pending (the volumes' backpressure) the body
 * is paused and the idle clock stopped: that wait is the volumes', not the
 * client's. Rejects when the body breaks off, when `onChunk` fails, when
 * `signal` aborts, and with BodyTimeoutError when no byte arrives for
 * `idleSeconds` while one is awaited (a client that stopped sending would
 * otherwise hold its volume connections forever). A body left early is
 * paused, not destroyed: its connection can still carry the answer.
 */
export function readBody(
  body: Readable,
  options: { idleSeconds: number; signal?: AbortSignal },
  onChunk: (chunk: Buffer) => void | Promise<unknown>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    if (body.destroyed || body.readableEnded) {
      reject(new Error(body.readableEnded ? 'body already read' : 'aborted'));
      return;
    }
    const { idleSeconds, signal } = options;
    let settled = false;
    let waitingForVolumes = false;
    const idle = setTimeout(() => {
      if (waitingForVolumes) idle.refresh();
      else finish(new BodyTimeoutError(idleSeconds));
    }, idleSeconds * 1000);

    const finish = (error?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(idle);
      body.off('data', onData).off('end', onEnd).off('error', finish).off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
      if (error === undefined) {
        resolve();
      } else {
        body.pause();
        reject(error);
      }
    };
    const onData = (chunk: Buffer) => {
      idle.refresh();
      let pending: void | Promise<unknown>;
      try {
        pending = onChunk(chunk);
      } catch (error) {
        finish(error);
        return;
      }
      if (pending === undefined) return;
      body.pause();
      waitingForVolumes = true;
      pending.then(() => {
        waitingForVolumes = false;
        if (settled) return;
        idle.refresh();
        body.resume();
      }, finish);
    };
    const onEnd = () => finish();
    const onClose = () => finish(new Error('aborted')); // closed before its end
    const onAbort = () => finish(signal!.reason);

    if (signal?.aborted) {
      finish(signal.reason);
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    body.on('data', onData).once('end', onEnd).once('error', finish).once('close', onClose);
    body.resume();
  });
}
