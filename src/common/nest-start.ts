import { Logger } from '@nestjs/common';
import { ConfigError } from '../config/config-error';
import { IndexInUseError } from '../index/index-in-use.error';

/**
 * Options for creating the app or a CLI job's context: Nest's start-up logs
 * are held back and a start-up error is thrown to the caller, not logged and
 * turned into exit 1 by Nest. The caller flushes the logs once it has started.
 */
export const NEST_START_OPTIONS = { bufferLogs: true, autoFlushLogs: false, abortOnError: false } as const;

/**
 * Runs `create` (built with NEST_START_OPTIONS). A refusal to start (another
 * mkv owns the index; a team's module finds its configuration wanting and
 * throws ConfigError) stays the one line main.ts prints; any other failure
 * shows what Nest logged on the way, stack included.
 */
export async function startNest<T>(create: () => Promise<T>): Promise<T> {
  try {
    return await create();
  } catch (error) {
    if (!(error instanceof IndexInUseError || error instanceof ConfigError)) Logger.flush();
    throw error;
  }
}
