import { http, keyUrl } from './support/http';
import { runMkv, ServerProcess } from './support/cli';
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
    const server = await ServerProcess.start(['-r', '2'], port, {
      MKV_VOLUMES: volumes.urls.map((u) => u.replace('http://', '')).join(','),
      MKV_DB: `${volumes.root}/env.db`,
      MKV_REPLICAS: '5',
    });
    try {
      expect((await http('PUT', keyUrl(server.url, 'from/env'), { body: 'x' })).status).toBe(201);
      expect(volumes.list.every((v) => v.has('from/env'))).toBe(true);
    } finally {
      await server.stop();
      await volumes.stop();
    }
  });
});
