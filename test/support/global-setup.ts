import { randomBytes } from 'node:crypto';

/** Names this jest run, so its teardown stops only the volumes this run started (workers inherit the variable). */
export default function globalSetup(): void {
  process.env.MKV_TEST_RUN = randomBytes(4).toString('hex');
}
