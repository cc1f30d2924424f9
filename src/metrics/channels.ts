import { channel } from 'node:diagnostics_channel';

/**
 * Instrumentation points: services publish, the metrics subscribe, neither
 * depends on the other, and publishing costs nothing with no subscriber.
 */
export const valueWritten = channel('mkv:value-written');

export interface ValueWrittenEvent {
  key: string;
  size: number;
  replicas: number;
}
