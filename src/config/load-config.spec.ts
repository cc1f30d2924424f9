import { ConfigError, ConfigInput, loadConfig, normalizeVolumeUrl } from './load-config';
import { MkvConfig } from './mkv-config';

function configError(flags: ConfigInput, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    loadConfig(flags, env);
  } catch (error) {
    return error as ConfigError;
  }
  throw new Error(`loadConfig(${JSON.stringify(flags)}) accepted the configuration`);
}

describe(loadConfig.name, () => {
  it('fills every option it is not given with its default', () => {
    const config = loadConfig({ volumes: 'localhost:8081' });
    expect(config).toBeInstanceOf(MkvConfig);
    expect({ ...config }).toEqual({
      db: './data/index.db',
      volumes: ['http://localhost:8081'],
      replicas: 3,
      subvolumes: 1,
      fallback: undefined,
      protect: false,
      port: 3000,
      host: '127.0.0.1',
      healthInterval: 2,
      bodyTimeout: 30,
      logLevel: 'info',
      logRequests: false,
    });
  });

  it('reads every option from its MKV_* environment variable', () => {
    const config = loadConfig(
      {},
      {
        MKV_DB: '/var/lib/mkv/index.db',
        MKV_VOLUMES: 'v1:80,v2:80',
        MKV_REPLICAS: '2',
        MKV_SUBVOLUMES: '16',
        MKV_FALLBACK: 'http://old.example:3000/',
        MKV_PROTECT: 'true',
        MKV_PORT: '8080',
        MKV_HOST: '0.0.0.0',
        MKV_HEALTH_INTERVAL: '0.5',
        MKV_BODY_TIMEOUT: '12.5',
        MKV_LOG_LEVEL: 'debug',
        MKV_LOG_REQUESTS: 'yes',
      },
    );
    expect({ ...config }).toEqual({
      db: '/var/lib/mkv/index.db',
      volumes: ['http://v1', 'http://v2'],
      replicas: 2,
      subvolumes: 16,
      fallback: 'http://old.example:3000',
      protect: true,
      port: 8080,
      host: '0.0.0.0',
      healthInterval: 0.5,
      bodyTimeout: 12.5,
      logLevel: 'debug',
      logRequests: true,
    });
  });

  it('lets a flag win over its environment variable, option by option', () => {
    const config = loadConfig(
      { volumes: 'flag:1', replicas: '1', protect: false },
      { MKV_VOLUMES: 'env:1', MKV_REPLICAS: '2', MKV_PROTECT: '1', MKV_PORT: '4000' },
    );
    expect(config.volumes).toEqual(['http://flag:1']);
    expect(config.replicas).toBe(1);
    expect(config.protect).toBe(false);
    expect(config.port).toBe(4000);
  });

  it('takes numbers and booleans as given by a caller', () => {
    const config = loadConfig({ volumes: ['a:1', 'b:2'], replicas: 2, subvolumes: 256, port: 0, protect: true });
    expect(config.volumes).toEqual(['http://a:1', 'http://b:2']);
    expect([config.replicas, config.subvolumes, config.port, config.protect]).toEqual([2, 256, 0, true]);
  });

  it.each([
    ['yes', true],
    ['on', true],
    ['1', true],
    ['TRUE', true],
    ['no', false],
    ['off', false],
    ['0', false],
    ['', false],
  ])('reads --protect %j as %s', (value, expected) => {
    expect(loadConfig({ volumes: 'a:1', protect: value }).protect).toBe(expected);
  });

  describe('volumes', () => {
    it('keeps the order given, trims blanks and skips empty items', () => {
      expect(loadConfig({ volumes: ' c:3 , a:1,,b:2, ' }).volumes).toEqual(['http://c:3', 'http://a:1', 'http://b:2']);
    });

    it.each([
      ['host:8081', 'http://host:8081'],
      ['127.0.0.1:8081', 'http://127.0.0.1:8081'],
      ['http://host:8081/', 'http://host:8081'],
      ['http://host:8081//', 'http://host:8081'],
      ['https://vol.example.com/', 'https://vol.example.com'],
      ['https://vol.example.com:8443/data/', 'https://vol.example.com:8443/data'],
      ['HTTP://Host:8081', 'http://host:8081'],
    ])('normalizes %s to %s', (raw, normalized) => {
      expect(normalizeVolumeUrl(raw)).toBe(normalized);
      expect(loadConfig({ volumes: raw }).volumes).toEqual([normalized]);
    });

    it('rejects a volume listed twice, even when spelled differently', () => {
      const error = configError({ volumes: 'host:8081,http://host:8081/' });
      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toBe('invalid --volumes: http://host:8081 is listed twice');
    });

    it.each([
      [{}, 'invalid --volumes: at least one volume URL is required'],
      [{ volumes: '' }, 'invalid --volumes: at least one volume URL is required'],
      [{ volumes: ' , ' }, 'invalid --volumes: at least one volume URL is required'],
      [{ volumes: [] }, 'invalid --volumes: at least one volume URL is required'],
      [{ volumes: 'ftp://host:21' }, "invalid --volumes: 'ftp://host:21' must use http or https"],
      [{ volumes: 'http://host:1/?x=1' }, "invalid --volumes: 'http://host:1/?x=1' must not have a query, fragment or credentials"],
      [{ volumes: 'http://u:p@host:1' }, "invalid --volumes: 'http://u:p@host:1' must not have a query, fragment or credentials"],
      [{ volumes: 'http://host:99999' }, "invalid --volumes: 'http://host:99999' is not a URL or host:port"],
    ])('rejects volumes %j', (flags, message) => {
      const error = configError(flags);
      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toBe(message);
    });
  });

  it.each<[ConfigInput, string]>([
    [{ replicas: '0' }, 'invalid --replicas: must be at least 1'],
    [{ replicas: '65' }, 'invalid --replicas: must be at most 64'],
    [{ replicas: 'three' }, "invalid --replicas: 'three' is not a whole number"],
    [{ replicas: '2.5' }, "invalid --replicas: '2.5' is not a whole number"],
    [{ replicas: 1.5 }, 'invalid --replicas: must be a whole number'],
    [{ subvolumes: '0' }, 'invalid --subvolumes: must be at least 1'],
    [{ subvolumes: '257' }, 'invalid --subvolumes: must be at most 256'],
    [{ subvolumes: '' }, "invalid --subvolumes: '' is not a whole number"],
    [{ port: '-1' }, 'invalid --port: must be from 0 to 65535'],
    [{ port: '65536' }, 'invalid --port: must be from 0 to 65535'],
    [{ port: 'http' }, "invalid --port: 'http' is not a whole number"],
    [{ protect: 'maybe' }, "invalid --protect: 'maybe' is not true or false"],
    [{ fallback: 'ftp://old:21' }, 'invalid --fallback: must be an http:// or https:// URL'],
    [{ db: '' }, 'invalid --db: must name a file'],
    [{ host: '' }, 'invalid --host: must name an interface'],
    [{ bodyTimeout: '0' }, 'invalid --body-timeout: must be at least 0.1 seconds'],
    [{ bodyTimeout: '3601' }, 'invalid --body-timeout: must be at most 3600 seconds'],
    [{ bodyTimeout: '30s' }, "invalid --body-timeout: '30s' is not a number"],
  ])('rejects %j with a message naming the option', (flags, message) => {
    const error = configError({ volumes: 'a:1', ...flags });
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toBe(message);
  });

  it('names the option when the bad value comes from the environment', () => {
    expect(configError({ volumes: 'a:1' }, { MKV_REPLICAS: '0' }).message).toBe('invalid --replicas: must be at least 1');
  });

  it('does not read process.env by itself', () => {
    const saved = process.env.MKV_VOLUMES;
    process.env.MKV_VOLUMES = 'from-process-env:1';
    try {
      expect(configError({}).message).toBe('invalid --volumes: at least one volume URL is required');
    } finally {
      if (saved === undefined) delete process.env.MKV_VOLUMES;
      else process.env.MKV_VOLUMES = saved;
    }
  });
});
