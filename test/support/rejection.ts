import type { MkvError } from '../../src/common/mkv-error';

/** The error a promise rejects with; fails the test if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<MkvError> {
  try {
    await promise;
  } catch (error) {
    return error as MkvError;
  }
  throw new Error('expected a rejection');
}
