import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pollUntil } from './poll-until';

const START_SCRIPT = resolve(__dirname, '../../nginx/start-volumes.sh');

/** Temp dirs of this jest run's volumes start with this (see global-setup.ts). */
export function testRunPrefix(): string {
  return `mkv-test-${process.env.MKV_TEST_RUN ?? 'x'}-`;
}

/** A free TCP port on the loopback interface. */
export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/** One real nginx WebDAV volume, started with the repository's own script. */
export class TestVolume {
  constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The directory the volume serves: a key `a/b` is the file `<dataDir>/a/b`. */
  get dataDir(): string {
    return join(this.dir, 'data');
  }

  filePath(relative: string): string {
    return join(this.dataDir, relative);
  }

  has(relative: string): boolean {
    return existsSync(this.filePath(relative));
  }

  read(relative: string): Buffer {
    return readFileSync(this.filePath(relative));
  }

  /** Request bodies nginx is receiving right now (it spools each to a file until the body is complete). */
  bodiesReceiving(): number {
    return readdirSync(this.filePath('.nginx-body'), { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).length;
  }

  /** Uploads still under their temporary names; a volume that never took a write has no /.mkv-tmp at all. */
  tempFiles(): string[] {
    return this.has('.mkv-tmp') ? readdirSync(this.filePath('.mkv-tmp')) : [];
  }

  get running(): boolean {
    const pid = this.pid();
    return pid !== undefined && isAlive(pid);
  }

  /** Starts nginx for this volume unless it is already running. */
  async start(): Promise<void> {
    if (this.running) return;
    execFileSync('bash', [START_SCRIPT, join(this.dir, '..'), String(this.port)], { stdio: 'pipe' });
    await pollUntil(async () => (await fetch(`${this.url}/`).then((r) => r.ok).catch(() => false)) || undefined, {
      timeoutMs: 5000,
      what: `nginx on ${this.url} to answer`,
    });
  }

  /**
   * Freezes nginx, master and worker (SIGSTOP): the kernel still accepts
   * connections and takes requests, nothing answers them. A volume that is
   * alive but too slow, as under heavy load.
   */
  pause(): void {
    for (const pid of this.processIds()) process.kill(pid, 'SIGSTOP');
  }

  resume(): void {
    for (const pid of this.processIds()) process.kill(pid, 'SIGCONT');
  }

  async stop(): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) return;
    if (isAlive(pid)) this.resume(); // a paused nginx would hold the SIGTERM
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    await pollUntil(() => (isAlive(pid) ? undefined : true), { timeoutMs: 5000, what: `nginx ${pid} to exit` });
  }

  /** The master and its workers (children, found in /proc). */
  private processIds(): number[] {
    const master = this.pid();
    if (master === undefined || !isAlive(master)) return [];
    const workers = readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .filter((name) => {
        try {
          // pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
          const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
          return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === master;
        } catch {
          return false; // exited meanwhile
        }
      })
      .map(Number);
    return [master, ...workers];
  }

  private pid(): number | undefined {
    const pidFile = join(this.dir, 'nginx.pid');
    return existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : undefined;
  }
}

/** N volumes in a fresh temp directory; `stop()` kills them and removes the directory. */
export class TestVolumes {
  private constructor(
    readonly root: string,
    readonly list: TestVolume[],
  ) {}

  static async start(count: number): Promise<TestVolumes> {
    const root = mkdtempSync(join(tmpdir(), testRunPrefix()));
    const list: TestVolume[] = [];
    for (let i = 0; i < count; i++) {
      const port = await freePort();
      const volume = new TestVolume(port, join(root, 'volumes', `vol-${port}`));
      await volume.start();
      list.push(volume);
    }
    return new TestVolumes(root, list);
  }

  get urls(): string[] {
    return this.list.map((v) => v.url);
  }

  byUrl(url: string): TestVolume {
    const volume = this.list.find((v) => v.url === url);
    if (!volume) throw new Error(`no test volume at ${url}`);
    return volume;
  }

  /** Adds one more running volume (for placement changes). */
  async add(): Promise<TestVolume> {
    const port = await freePort();
    const volume = new TestVolume(port, join(this.root, 'volumes', `vol-${port}`));
    await volume.start();
    this.list.push(volume);
    return volume;
  }

  async stop(): Promise<void> {
    await Promise.all(this.list.map((v) => v.stop()));
    rmSync(this.root, { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The usual teardown: the server first, then its volumes, even when stopping the server throws. */
export async function stopServerAndVolumes(server: { stop(): Promise<void> } | undefined, volumes: { stop(): Promise<void> } | undefined): Promise<void> {
  try {
    await server?.stop();
  } finally {
    await volumes?.stop();
  }
}
