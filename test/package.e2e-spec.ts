import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { placeKey } from '../src/hashing/rendezvous';
import { keyUrl } from './support/http';
import { TestVolumes } from './support/volumes';

/**
 * mkv as a team gets it: the tarball `npm pack` makes, installed into an
 * empty project with npm, its `mkv` command run, and a TypeScript file that
 * imports the package by name type-checked against the installed
 * declarations and run, with its own VolumeClient decorator over real nginx
 * volumes. Proves the package is whole (no file it needs left out of
 * `files`, no test or source in it) and that its public API is what a team
 * can compile against.
 *
 * The install runs without install scripts, once, in beforeAll; the one
 * native addon, better-sqlite3, then gets the build this checkout's own
 * `npm ci` compiled when the versions agree (compiling it again took 50 s of
 * a core on a quiet machine and over 8 minutes on a loaded one, which timed
 * the suite out); otherwise it is compiled here (`npm rebuild`, at -O0 and a
 * lower CPU priority, so the suites beside it keep their pace). That
 * better-sqlite3's own install script builds is what every `npm ci` of this
 * repository proves.
 */
const ROOT = resolve(__dirname, '..');
const TSC = require.resolve('typescript/bin/tsc');
const INSTALL_TIMEOUT_MS = 6 * 60_000;

function versionOf(packageDir: string): string {
  return (JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { version: string }).version;
}

describe('npm pack, install and use', () => {
  let scratch: string;
  let tarball: string;
  let packed: string[];
  let project: string;
  const timings: Record<string, number> = {};

  /** Runs a command to completion and returns its stdout; throws with its output when it fails. */
  const run = (what: string, command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): string => {
    const started = Date.now();
    const result = spawnSync(command, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: INSTALL_TIMEOUT_MS, maxBuffer: 64 << 20 });
    timings[what] = Date.now() - started;
    if (result.status !== 0) throw new Error(`${what} failed (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
  };

  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'mkv-pack-'));
    // The dist/ that `npm run build` made before the suites (as for the CLI suites). npm's prepack
    // would build again, removing dist/ under the suites running beside this one: not here.
    const [pack] = JSON.parse(run('npm pack', 'npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', scratch], ROOT)) as {
      filename: string;
      files: { path: string }[];
    }[];
    tarball = join(scratch, pack.filename);
    packed = pack.files.map((file) => file.path);

    project = join(scratch, 'team-project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'team-project', private: true }));
    run('npm install', 'npm', ['install', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', tarball], project);
    const installed = join(project, 'node_modules/better-sqlite3');
    if (versionOf(installed) === versionOf(join(ROOT, 'node_modules/better-sqlite3'))) {
      cpSync(join(ROOT, 'node_modules/better-sqlite3/build'), join(installed, 'build'), { recursive: true });
    } else {
      // node-gyp appends CFLAGS/CXXFLAGS after the package's own flags: the last -O wins.
      run('npm rebuild', 'nice', ['-n', '10', 'npm', 'rebuild', 'better-sqlite3'], project, { CFLAGS: '-O0', CXXFLAGS: '-O0' });
    }
  }, INSTALL_TIMEOUT_MS);

  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    console.info(`package suite timings (ms): ${JSON.stringify(timings)}`);
  });

  it('packs the built entry points, the command and the nginx volume scripts, and no tests or sources', () => {
    for (const path of ['package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/main.js', 'bin/mkv', 'nginx/start-volumes.sh', 'nginx/volume.conf.template']) expect(packed).toContain(path);
    expect(packed.filter((path) => /^(test|src|examples|bench|node_modules)\//.test(path) || /\.spec\./.test(path))).toEqual([]);
  });

  it('installs a working mkv command: `mkv --help` exits 0 and lists serve', () => {
    const help = spawnSync(join(project, 'node_modules/.bin/mkv'), ['--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^\s+serve \[options\]/m);
  });

  describe('a team project that imports mkv by name', () => {
    let volumes: TestVolumes;

    beforeAll(async () => {
      volumes = await TestVolumes.start(3);
    });
    afterAll(() => volumes?.stop());

    it('type-checks against the installed declarations, then runs a server with its own VolumeClient decorator: a PUT reaches the volumes through it', () => {
      mkdirSync(join(project, 'src'));
      writeFileSync(join(project, 'src/server.ts'), TEAM_SERVER);
      writeFileSync(join(project, 'tsconfig.json'), JSON.stringify(teamTsconfig(), null, 2));
      // The repository's compiler, the package's own .d.ts files checked too (no skipLibCheck).
      run('tsc', process.execPath, [TSC, '-p', 'tsconfig.json'], project);

      const db = join(project, 'index.db');
      const output = run('run', process.execPath, ['out/server.js', volumes.urls.join(','), db], project);
      const seen = JSON.parse(output.trim().split('\n').pop()!) as { put: number; location: string; putUrls: string[] };

      const replicas = placeKey('from/package', volumes.urls, 2);
      expect(seen.put).toBe(201);
      expect(seen.location).toBe(`${replicas[0]}/from/package`);
      for (const url of replicas) expect(volumes.byUrl(url).read('from/package').toString()).toBe('installed and used');
      // The decorator saw each replica's upload (a small new key: straight to its path, no temporary name).
      expect([...seen.putUrls].sort()).toEqual(replicas.map((url) => keyUrl(url, 'from/package')).sort());
    });
  });
});

function teamTsconfig() {
  return {
    compilerOptions: {
      module: 'node16',
      moduleResolution: 'node16',
      target: 'es2022',
      strict: true,
      rootDir: 'src',
      outDir: 'out',
      // @types/node is the team's own devDependency; here, the repository's.
      typeRoots: [join(ROOT, 'node_modules/@types')],
      types: ['node'],
    },
    include: ['src'],
  };
}

/** A team's server: mkv in its own process, its own decorator of the stock volume client given as a factory. */
const TEAM_SERVER = `
import { createServer, HttpVolumeClient, loadConfig, VOLUME_CLIENT, type VolumeClient, type VolumeEntry } from 'mkv';
import type { Readable } from 'node:stream';

/** Notes the URL of every PUT, then lets the stock client do it. */
class RecordingVolumeClient implements VolumeClient {
  readonly putUrls: string[] = [];
  constructor(private readonly stock: VolumeClient) {}
  put(url: string, body: Readable | Buffer, options?: { length?: number; signal?: AbortSignal }): Promise<void> {
    this.putUrls.push(url);
    return this.stock.put(url, body, options);
  }
  move(fromUrl: string, toUrl: string): Promise<void> {
    return this.stock.move(fromUrl, toUrl);
  }
  delete(url: string): Promise<boolean> {
    return this.stock.delete(url);
  }
  get(url: string, options?: { signal?: AbortSignal }): Promise<{ body: Readable; size: number | undefined }> {
    return this.stock.get(url, options);
  }
  list(url: string): AsyncIterable<VolumeEntry> {
    return this.stock.list(url);
  }
  probe(volume: string, timeoutMs: number): Promise<void> {
    return this.stock.probe(volume, timeoutMs);
  }
}

async function main(): Promise<void> {
  const [volumes, db] = process.argv.slice(2);
  const config = loadConfig({ volumes, db, replicas: 2, logLevel: 'warn' });
  const app = await createServer({
    config,
    volumeClient: { useFactory: (stock: HttpVolumeClient) => new RecordingVolumeClient(stock), inject: [HttpVolumeClient] },
  });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  const put = await fetch(\`http://127.0.0.1:\${port}/from/package\`, { method: 'PUT', body: 'installed and used' });
  const get = await fetch(\`http://127.0.0.1:\${port}/from/package\`, { redirect: 'manual' });
  const recorder = app.get<VolumeClient>(VOLUME_CLIENT) as RecordingVolumeClient;
  await app.close();
  console.log(JSON.stringify({ put: put.status, location: get.headers.get('location'), putUrls: recorder.putUrls }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
`;
