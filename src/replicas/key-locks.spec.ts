import { KeyLocks } from './key-locks';

/** A promise the test settles by hand. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every already-settled promise callback run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe(KeyLocks.name, () => {
  let locks: KeyLocks;
  let events: string[];

  beforeEach(() => {
    locks = new KeyLocks();
    events = [];
  });

  /** Runs a step under the key's lock that logs its start and end and finishes when `gate` settles. */
  function step(key: string, name: string, gate: Promise<string>): Promise<string> {
    return locks.run(key, async () => {
      events.push(`${name} start`);
      try {
        return await gate;
      } finally {
        events.push(`${name} end`);
      }
    });
  }

  it('runs the changes to one key one after another, in arrival order', async () => {
    const gates = [deferred<string>(), deferred<string>(), deferred<string>()];
    const runs = gates.map((gate, i) => step('k', `#${i}`, gate.promise));
    await settle();
    expect(events).toEqual(['#0 start']);
    expect(locks.size).toBe(1);

    gates[2].resolve('third');
    gates[1].resolve('second');
    await settle();
    expect(events).toEqual(['#0 start']);

    gates[0].resolve('first');
    await expect(Promise.all(runs)).resolves.toEqual(['first', 'second', 'third']);
    expect(events).toEqual(['#0 start', '#0 end', '#1 start', '#1 end', '#2 start', '#2 end']);
  });

  it('starts the next change only after a failing one has finished', async () => {
    const first = deferred<string>();
    const failing = step('k', 'first', first.promise);
    const second = step('k', 'second', Promise.resolve('ok'));
    await settle();
    expect(events).toEqual(['first start']);

    first.reject(new Error('boom'));
    await expect(failing).rejects.toThrow('boom');
    await expect(second).resolves.toBe('ok');
    expect(events).toEqual(['first start', 'first end', 'second start', 'second end']);
  });

  it('passes on a synchronous throw and keeps the lock usable', async () => {
    await expect(
      locks.run('k', () => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
    await expect(locks.run('k', async () => 'after')).resolves.toBe('after');
    expect(locks.size).toBe(0);
  });

  it('runs changes to different keys at the same time', async () => {
    const a = deferred<string>();
    const b = deferred<string>();
    const runA = step('a', 'a', a.promise);
    const runB = step('b', 'b', b.promise);
    await settle();
    expect(events).toEqual(['a start', 'b start']);
    expect(locks.size).toBe(2);

    b.resolve('b');
    await expect(runB).resolves.toBe('b');
    expect(events).toEqual(['a start', 'b start', 'b end']);
    a.resolve('a');
    await expect(runA).resolves.toBe('a');
  });

  it('forgets a key once its last change has finished', async () => {
    const gates = [deferred<string>(), deferred<string>()];
    const runs = [step('k', '#0', gates[0].promise), step('k', '#1', gates[1].promise)];
    await settle();
    expect(locks.size).toBe(1);

    gates[0].resolve('');
    await runs[0];
    expect(locks.size).toBe(1);
    gates[1].reject(new Error('last one fails'));
    await expect(runs[1]).rejects.toThrow('last one fails');
    expect(locks.size).toBe(0);
  });
});
