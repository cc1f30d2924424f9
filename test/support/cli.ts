import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pollUntil } from './poll-until';

/** The mkv command, as `npm install` puts it on the PATH (it runs the build in dist/). */
export const MKV_BIN = resolve(__dirname, '../../bin/mkv');
/** Where mkv runs: relative paths given to it (`--module test/fixtures/...`) are from here. */
export const MKV_CWD = resolve(__dirname, '../..');
const BUILT_MAIN = resolve(__dirname, '../../dist/main.js');

function requireBuild(): void {
  if (!existsSync(BUILT_MAIN)) throw new Error(`${BUILT_MAIN} is missing: run 'npm run build' (npm test does it first)`);
}

/** Runs `mkv <args>` to completion. */
export function runMkv(args: string[], env: NodeJS.ProcessEnv = {}) {
  requireBuild();
  const result = spawnSync(MKV_BIN, args, {
    cwd: MKV_CWD,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, ...env },
    timeout: 30_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** `mkv ... serve` as a separate process, so its own memory can be measured. */
export class ServerProcess {
  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
    private readonly captured: { text: string },
  ) {}

  /** Everything it has written to stdout and stderr so far. */
  get output(): string {
    return this.captured.text;
  }

  /** `as`: another user to run it as (the tests run as root, who ignores file modes). */
  static async start(args: string[], port: number, env: NodeJS.ProcessEnv = {}, as: { uid?: number; gid?: number } = {}): Promise<ServerProcess> {
    requireBuild();
    const child = spawn(MKV_BIN, [...args, 'serve', '--port', String(port), '--host', '127.0.0.1'], {
      cwd: MKV_CWD,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH, ...env },
      ...as,
    });
    const captured = { text: '' };
    child.stdout!.on('data', (d) => (captured.text += d));
    child.stderr!.on('data', (d) => (captured.text += d));
    await pollUntil(() => (captured.text.includes('mkv listening') ? true : child.exitCode !== null ? fail(captured.text) : undefined), {
      timeoutMs: 15_000,
      what: 'mkv serve to listen',
    });
    return new ServerProcess(child, `http://127.0.0.1:${port}`, captured);
  }

  /** Resident set size now, and its peak so far, in bytes (from /proc). */
  memory(): { rss: number; peak: number } {
    const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return; // exited, or killed by a signal
    const exited = new Promise((done) => this.child.once('exit', done));
    this.child.kill('SIGTERM');
    await exited;
  }
}

function fail(output: string): never {
  throw new Error(`mkv serve exited before listening:\n${output}`);
}
