import pino, { Logger } from 'pino';
import { MkvConfig } from '../config/mkv-config';

/** The one pino instance every log line goes through. */
export const ROOT_LOGGER = Symbol('ROOT_LOGGER');

export function createRootLogger(config: Pick<MkvConfig, 'logLevel'>, destination?: pino.DestinationStream): Logger {
  return pino({ level: config.logLevel }, destination);
}
