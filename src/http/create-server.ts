import { NestFactory } from '@nestjs/core';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { NEST_START_OPTIONS, startNest } from '../common/nest-start';
import { MkvLogger } from '../logging/mkv-logger';
import { MkvModule } from '../mkv.module';
import type { MkvModuleOptions } from '../mkv-options';
import { streamingAdapter } from './streaming-adapter';

/**
 * The signals that stop the server gracefully. Not Nest's default list: it
 * includes the fault signals (SIGBUS, SIGSEGV, ...), and a handler that
 * returns re-runs the faulting instruction, so a SIGBUS from the index's
 * memory-mapped -shm (made immutable under the server) spun forever instead
 * of ending the process.
 */
const SHUTDOWN_SIGNALS = ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGUSR2'] as const;

/**
 * The server as `mkv serve` runs it: MkvModule on the streaming adapter, pino
 * logs, the admin API's OpenAPI page, graceful shutdown on the stop signals.
 * Not yet listening.
 */
export async function createServer(options: MkvModuleOptions): Promise<NestFastifyApplication> {
  const app = await startNest(() =>
    NestFactory.create<NestFastifyApplication>(MkvModule.forRoot(options), streamingAdapter(), { bodyParser: false, ...NEST_START_OPTIONS }),
  );
  app.useLogger(app.get(MkvLogger));
  app.flushLogs();
  const openApi = new DocumentBuilder()
    .setTitle('mkv admin API')
    .setDescription('Jobs (rebuild, rebalance), volume health, readiness and metrics. The key API is described in the README.')
    .build();
  SwaggerModule.setup('_admin/docs', app, () => SwaggerModule.createDocument(app, openApi));
  app.enableShutdownHooks([...SHUTDOWN_SIGNALS]);
  return app;
}
