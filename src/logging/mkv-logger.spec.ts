import { Logger } from '@nestjs/common';
import { Writable } from 'node:stream';
import { MkvLogger } from './mkv-logger';
import { createRootLogger } from './root-logger';

function capture(level: 'info' | 'debug' = 'info') {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()));
      done();
    },
  });
  return { lines, logger: new MkvLogger(createRootLogger({ logLevel: level }, sink)) };
}

describe('MkvLogger', () => {
  it('writes one JSON line per call with its level, context and message', () => {
    const { lines, logger } = capture();
    logger.warn('volume http://v1 is down', 'VolumeHealth');
    expect(lines).toEqual([expect.objectContaining({ level: 40, context: 'VolumeHealth', msg: 'volume http://v1 is down' })]);
  });

  it('merges an object message into the line, so a request error carries its reqId', () => {
    const { lines, logger } = capture();
    logger.warn({ reqId: 'trace-1', msg: 'PUT /k: not all volume writes succeeded' }, 'mkv');
    expect(lines[0]).toEqual(expect.objectContaining({ reqId: 'trace-1', context: 'mkv', msg: 'PUT /k: not all volume writes succeeded' }));
  });

  it('keeps the stack Nest passes with an error', () => {
    const { lines, logger } = capture();
    logger.error('job failed', 'Error: boom\n    at x', 'JobsService');
    expect(lines[0]).toEqual(expect.objectContaining({ level: 50, context: 'JobsService', stack: 'Error: boom\n    at x', msg: 'job failed' }));
  });

  it('moves Nest\'s start-up lines down to debug, where info does not show them', () => {
    const quiet = capture('info');
    quiet.logger.log('Mapped {/, GET} route', 'RouterExplorer');
    quiet.logger.log('listening on 3000', 'mkv');
    expect(quiet.lines.map((line) => line.msg)).toEqual(['listening on 3000']);

    const verbose = capture('debug');
    verbose.logger.log('Mapped {/, GET} route', 'RouterExplorer');
    expect(verbose.lines[0]).toEqual(expect.objectContaining({ level: 20, context: 'RouterExplorer' }));
  });

  it('serves as the app logger behind Nest\'s static Logger', () => {
    const { lines, logger } = capture();
    Logger.overrideLogger(logger);
    try {
      new Logger('KeyWriter').warn('upload failed: volume http://v2 unreachable');
    } finally {
      Logger.overrideLogger(false);
    }
    expect(lines[0]).toEqual(expect.objectContaining({ level: 40, context: 'KeyWriter', msg: 'upload failed: volume http://v2 unreachable' }));
  });
});
