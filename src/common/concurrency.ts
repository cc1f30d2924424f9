/**
 * Runs `work` over `items` with at most `limit` at a time. Once `signal` is
 * aborted no new item starts; the ones under way finish.
 */
export async function forEachConcurrently<T>(
  items: readonly T[],
  limit: number,
  signal: AbortSignal,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length && !signal.aborted) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Lets the event loop answer requests. A job whose steps are all synchronous
 * SQLite calls (planning, skipping keys in place) would otherwise hold it
 * until the job ends: call this between pages.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
