import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { rejection } from '../../test/support/rejection';
import { BodyTimeoutError, readBody } from './request-body';

describe(readBody.name, () => {
  const IDLE_S = 0.1;

  it('hands every chunk over in order and resolves at the end of the body', async () => {
    const body = new PassThrough();
    const seen: string[] = [];
    const done = readBody(body, { idleSeconds: IDLE_S }, (chunk) => void seen.push(chunk.toString()));
    body.write('a');
    body.end('b');
    await done;
    expect(seen.join('')).toBe('ab');
  });

  it('rejects with BodyTimeoutError when the client stops sending, leaving the body paused, not destroyed', async () => {
    const body = new PassThrough();
    const done = readBody(body, { idleSeconds: IDLE_S }, () => undefined);
    body.write('first bytes, then nothing');
    const error = await rejection(done);
    expect(error).toBeInstanceOf(BodyTimeoutError);
    expect(error.message).toBe(`nothing received for ${IDLE_S} s`);
    expect(body.destroyed).toBe(false); // the connection can still carry the answer
    expect(body.isPaused()).toBe(true);
  });

  it('does not count the time spent waiting for the volumes (a slow volume is not a stalled client)', async () => {
    const body = new PassThrough();
    const seen: string[] = [];
    const done = readBody(body, { idleSeconds: IDLE_S }, async (chunk) => {
      seen.push(chunk.toString());
      await sleep(IDLE_S * 3000);
    });
    body.write('a');
    body.end('b');
    await done;
    expect(seen.join('')).toBe('ab');
  });

  it('rejects with the reason of an aborted signal, at once', async () => {
    const body = new PassThrough();
    const abort = new AbortController();
    const done = readBody(body, { idleSeconds: 3600, signal: abort.signal }, () => undefined);
    abort.abort(new Error('a volume failed'));
    expect((await rejection(done)).message).toBe('a volume failed');
  });

  it('rejects a body that is closed before its end', async () => {
    const body = new PassThrough();
    const done = readBody(body, { idleSeconds: 3600 }, () => undefined);
    body.write('part');
    body.destroy();
    expect((await rejection(done)).message).toBe('aborted');
  });
});
