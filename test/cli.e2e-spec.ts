import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { MKV_OPTIONS } from '../src/config/options';
import { http, keyUrl, md5 } from './support/http';
import { MKV_CWD, runMkv, ServerProcess } from './support/cli';
import { pollUntil } from './support/poll-until';
import { GeneratedBody } from './support/streams';
import { freePort, TestVolumes } from './support/volumes';

/** The command line as an operator meets it. */
describe('mkv CLI', () => {
  it('--help documents every option and exits 0', () => {
    const { status, stdout } = runMkv(['--help']);
    expect(status).toBe(0);
    for (const option of ['--db', '--volumes', '--replicas', '--subvolumes', '--fallback', '--protect', 'serve']) {
      expect(stdout).toContain(option);
    }
    const serveHelp = runMkv(['serve', '--help']);
    expect(serveHelp.status).toBe(0);
    expect(serveHelp.stdout).toContain('--port');
    expect(serveHelp.stdout).toContain('--host');
  });

  it('--help shows every option with its environment variable and default, all from the one table (src/config/options.ts)', () => {
    // Commander wraps the lines; the words are what an operator reads.
    const help = (args: string[]) => runMkv(args).stdout.replace(/\s+/g, ' ');
    const byCommand = { global: help(['--help']), serve: help(['serve', '--help']), rebalance: help(['rebalance', '--help']) };
    expect(byCommand.global).toContain('-r, --replicas <n> replicas per key (default: 3, env: MKV_REPLICAS)');
    expect(byCommand.global).toContain('-d, --db <path> SQLite index file (default: "./data/index.db", env: MKV_DB)');
    expect(byCommand.global).toContain('--module <path>');
    expect(byCommand.global).toContain('(env: MKV_MODULES)');
    expect(byCommand.serve).toContain('-p, --port <port> port to listen on (default: 3000, env: MKV_PORT)');
    expect(byCommand.rebalance).toContain('--concurrency <n> keys moved at once (default: 8)');
    // Commander only shows the variables: a bad one is loadConfig's to refuse, after --help has answered.
    expect(runMkv(['--help'], { MKV_REPLICAS: 'many' }).status).toBe(0);
    for (const spec of Object.values(MKV_OPTIONS)) {
      const text = byCommand[spec.command];
      expect(text).toContain(`${spec.flags} ${spec.description}`);
      if (spec.env !== undefined) expect(text).toContain(`env: ${spec.env}`);
      if (spec.default !== undefined && spec.default !== false) expect(text).toContain(`default: ${JSON.stringify(spec.default)}`);
    }
  });

  it('nest-cli.json describes the build bin/mkv runs (src/main.ts through tsconfig.build.json), and no schematics the project lacks', () => {
    const json = (file: string) => JSON.parse(readFileSync(resolve(MKV_CWD, file), 'utf8'));
    const nest = json('nest-cli.json');
    const build = json(nest.compilerOptions.tsConfigPath).compilerOptions;
    const pkg = json('package.json');
    expect(nest.compilerOptions.tsConfigPath).toBe('tsconfig.build.json');
    expect(resolve(MKV_CWD, nest.sourceRoot)).toBe(resolve(MKV_CWD, build.rootDir));
    expect(existsSync(resolve(MKV_CWD, nest.sourceRoot, `${nest.entryFile}.ts`))).toBe(true);
    const entry = `${build.outDir.replace(/^\.\//, '')}/${nest.entryFile}.js`;
    expect(readFileSync(resolve(MKV_CWD, 'bin/mkv'), 'utf8')).toContain(`/../${entry}`);
    expect(nest.compilerOptions.deleteOutDir).toBe(true); // as npm run build does
    if (nest.collection !== undefined) expect({ ...pkg.dependencies, ...pkg.devDependencies }).toHaveProperty([nest.collection]);
  });

  it.each([
    [['-v', 'a:1', '-r', 'two', 'serve'], "mkv: invalid --replicas: 'two' is not a whole number"],
    [['-v', 'a:1', '-r', '0', 'serve'], 'mkv: invalid --replicas: must be at least 1'],
    [['-v', 'a:1', 'serve', '-p', '70000'], 'mkv: invalid --port: must be from 0 to 65535'],
    [['-v', 'a:1,a:1', 'serve'], 'mkv: invalid --volumes: http://a:1 is listed twice'],
    [['-v', 'ftp://a:1', 'serve'], "mkv: invalid --volumes: 'ftp://a:1' must use http or https"],
    [['serve'], 'mkv: invalid --volumes: at least one volume URL is required'],
    [['-v', 'a:1', '--subvolumes', '1000', 'serve'], 'mkv: invalid --subvolumes: must be at most 256'],
  ])('mkv %j exits 2 with one line naming the option', (args, message) => {
    const { status, stderr } = runMkv(args);
    expect(status).toBe(2);
    expect(stderr.trim()).toBe(message);
  });

  it('exits 2 for an unknown option or command', () => {
    const unknownOption = runMkv(['--nope', 'serve']);
    expect(unknownOption.status).toBe(2);
    expect(unknownOption.stderr).toContain("unknown option '--nope'");
    expect(runMkv(['frobnicate']).status).toBe(2);
  });

  it('reads its options from MKV_* environment variables, and a bad one is named the same way', () => {
    const { status, stderr } = runMkv(['serve'], { MKV_VOLUMES: 'a:1', MKV_REPLICAS: 'many' });
    expect(status).toBe(2);
    expect(stderr.trim()).toBe("mkv: invalid --replicas: 'many' is not a whole number");
  });

  it('serves with options from the environment, flags winning over it', async () => {
    const volumes = await TestVolumes.start(2);
    const port = await freePort();
    // The CLI shows each default in --help, yet a default never stands in for a flag: MKV_DB and
    // MKV_VOLUMES are used, and MKV_PROTECT=0 means off (commander alone takes a switch's variable as on).
    const server = await ServerProcess.start(['-r', '2'], port, {
      MKV_VOLUMES: volumes.urls.map((u) => u.replace('http://', '')).join(','),
      MKV_DB: `${volumes.root}/env.db`,
      MKV_REPLICAS: '5',
      MKV_PROTECT: '0',
    });
    try {
      expect((await http('PUT', keyUrl(server.url, 'from/env'), { body: 'x' })).status).toBe(201);
      expect(volumes.list.every((v) => v.has('from/env'))).toBe(true);
      expect(existsSync(`${volumes.root}/env.db`)).toBe(true);
      expect((await http('DELETE', keyUrl(server.url, 'from/env'))).status).toBe(204);
    } finally {
      await server.stop();
      await volumes.stop();
    }
  });

  it('on SIGTERM, finishes the PUT in flight (201, replicas written) and then exits', async () => {
    const volumes = await TestVolumes.start(2);
    const server = await ServerProcess.start(['-v', volumes.urls.join(','), '-r', '2', '-d', `${volumes.root}/index.db`], await freePort());
    let resume!: () => void;
    const paused = new Promise<void>((done) => (resume = done));
    let signalled!: () => void;
    const halfSent = new Promise<void>((done) => (signalled = done));
    const body = new GeneratedBody(4 << 20, async (sent) => {
      if (sent !== 2 << 20) return;
      signalled();
      await paused;
    });
    try {
      const put = http('PUT', keyUrl(server.url, 'in/flight'), { body, headers: { 'content-length': String(4 << 20) } });
      await halfSent;
      // Half the body has left the client; the server may not have read its
      // headers yet (on a loaded machine), and a request that arrives once the
      // shutdown began is answered 503. In flight means both volumes are
      // receiving the upload.
      await pollUntil(() => (volumes.list.every((volume) => volume.bodiesReceiving() > 0) ? true : undefined), { what: 'the upload to reach both volumes' });
      const exited = new Promise((done) => server.child.once('exit', (code, signal) => done({ code, signal })));
      server.child.kill('SIGTERM');
      await new Promise((done) => setTimeout(done, 500)); // the shutdown is under way
      resume();
      expect((await put).status).toBe(201);
      // Nest re-raises the signal once it has closed everything: the exit of a process that honoured it.
      const stillRunning = new Promise((done) => setTimeout(() => done('still running 10 s later'), 10_000).unref());
      expect(await Promise.race([exited, stillRunning])).toEqual({ code: null, signal: 'SIGTERM' });
      for (const volume of volumes.list) expect(md5(volume.read('in/flight'))).toBe(body.md5());
    } finally {
      resume();
      await server.stop();
      await volumes.stop();
    }
  });

  describe('--module and MKV_MODULES: a team\'s code, loaded without editing mkv', () => {
    const missing = './test/fixtures/missing.js';

    it.each([
      ['--module', ['--module', 'test/fixtures/hello-module.js'], {}],
      ['MKV_MODULES', [], { MKV_MODULES: 'test/fixtures/hello-module.js' }],
    ])('with %s, serves the module\'s controller (GET /_hello) beside the key API', async (_how, args, env) => {
      const volumes = await TestVolumes.start(2);
      const server = await ServerProcess.start(['-v', volumes.urls.join(','), '-r', '2', '-d', `${volumes.root}/index.db`, ...args], await freePort(), env);
      try {
        const hello = await http('GET', `${server.url}/_hello`);
        expect([hello.status, hello.text]).toEqual([200, 'hello']);
        expect((await http('PUT', keyUrl(server.url, 'beside/hello'), { body: 'value' })).status).toBe(201);
        const get = await http('GET', keyUrl(server.url, 'beside/hello'));
        expect(get.status).toBe(302);
        expect(volumes.list.every((v) => v.read('beside/hello').toString() === 'value')).toBe(true);
      } finally {
        await server.stop();
        await volumes.stop();
      }
    });

    it.each([
      [['-v', 'a:1', 'serve', '--module', missing], {}, `mkv: cannot load module ${missing}: Cannot find module '${resolve(MKV_CWD, missing)}'`],
      [['-v', 'a:1', 'serve'], { MKV_MODULES: missing }, `mkv: cannot load module ${missing}: Cannot find module '${resolve(MKV_CWD, missing)}'`],
      [
        ['-v', 'a:1', '--module', 'test/fixtures/exports-nothing.js', 'serve'],
        {},
        'mkv: cannot load module test/fixtures/exports-nothing.js: it exports no default, no mkvExtension and no Nest module',
      ],
    ])('mkv %j (env %j) exits 2 with one line naming the file, before starting', (args, env, message) => {
      const { status, stdout, stderr } = runMkv(args, env);
      expect(status).toBe(2);
      expect(stderr.trim()).toBe(message);
      expect(stdout).toBe('');
    });

    it.each(['serve', 'rebuild', 'rebalance'])('%s refuses two modules replacing the volume client, naming both (exit 2)', (command) => {
      const a = 'test/fixtures/volume-client-a.js';
      const b = 'test/fixtures/volume-client-b.js';
      const { status, stderr } = runMkv(['-v', 'a:1', '-d', '/nonexistent/index.db', '--module', a, '--module', b, command]);
      expect(status).toBe(2);
      expect(stderr.trim()).toBe(`mkv: invalid --module: ${a} and ${b} both replace the volumeClient; only one module may`);
    });

    it("serves on a team's index (no SQLite file, no index owner to watch): the server stays up and takes writes", async () => {
      const volumes = await TestVolumes.start(2);
      const db = `${volumes.root}/never-opened.db`;
      const server = await ServerProcess.start(['-v', volumes.urls.join(','), '-r', '2', '-d', db, '--module', 'test/fixtures/memory-index.js'], await freePort());
      try {
        expect((await http('PUT', keyUrl(server.url, 'in/memory'), { body: 'kept' })).status).toBe(201);
        const get = await http('GET', keyUrl(server.url, 'in/memory'));
        expect(get.status).toBe(302);
        expect((await http('GET', get.headers.location)).text).toBe('kept');
        expect(server.child.exitCode).toBeNull();
        expect(server.output).toContain('index from a module');
        expect(existsSync(db)).toBe(false);
      } finally {
        await server.stop();
        await volumes.stop();
      }
    });
  });
});
