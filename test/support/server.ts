import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigInput, loadConfig } from '../../src/config/load-config';
import type { MkvConfig } from '../../src/config/mkv-config';
import { HealthChecker } from '../../src/health/health-checker.service';
import { createServer } from '../../src/http/create-server';
import type { MkvExtension } from '../../src/mkv-options';

/** The real server (MkvModule, as createServer builds it) on a free port, over a real SQLite file in a temp dir. */
export class TestServer {
  private stopped = false;

  private constructor(
    readonly app: NestFastifyApplication,
    readonly config: MkvConfig,
    readonly url: string,
    private readonly dir: string,
    private readonly ownsDir: boolean,
  ) {}

  static async start(options: ConfigInput & { dir?: string }, extension: MkvExtension = {}): Promise<TestServer> {
    const ownsDir = options.dir === undefined;
    const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'mkv-index-'));
    mkdirSync(dir, { recursive: true });
    // Probes every 0.1 s by default, so a test sees a stopped or restarted volume's state settle fast.
    const config = loadConfig({ db: join(dir, 'index.db'), replicas: 2, logLevel: 'error', healthInterval: 0.1, ...options, port: 0, host: '127.0.0.1' });
    const app = await createServer({ config, ...extension });
    await app.listen(0, '127.0.0.1');
    const { port } = app.getHttpServer().address() as { port: number };
    return new TestServer(app, config, `http://127.0.0.1:${port}`, dir, ownsDir);
  }

  get dbPath(): string {
    return this.config.db;
  }

  /** Probes every volume now, twice (what it takes to bring a down volume back up). */
  async settleHealth(): Promise<void> {
    const checker = this.app.get(HealthChecker);
    await checker.probeAll();
    await checker.probeAll();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.app.close();
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}
