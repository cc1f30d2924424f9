import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { MkvConfig } from './mkv-config';

/** A configuration value that cannot be used; the message names the option. */
export class ConfigError extends Error {}

/** Option values as the CLI or a test gives them, before validation. */
export interface ConfigInput {
  db?: string;
  volumes?: string | string[];
  replicas?: string | number;
  subvolumes?: string | number;
  fallback?: string;
  protect?: string | boolean;
  port?: string | number;
  host?: string;
  healthInterval?: string | number;
  bodyTimeout?: string | number;
  logLevel?: string;
  logRequests?: string | boolean;
}

export const CONFIG_DEFAULTS = {
  db: './data/index.db',
  replicas: 3,
  subvolumes: 1,
  port: 3000,
  host: '127.0.0.1',
  healthInterval: 2,
  bodyTimeout: 30,
  logLevel: 'info',
} as const;

/** Environment variable behind each option; a CLI flag wins over it. */
export const CONFIG_ENV: Record<keyof ConfigInput, string> = {
  db: 'MKV_DB',
  volumes: 'MKV_VOLUMES',
  replicas: 'MKV_REPLICAS',
  subvolumes: 'MKV_SUBVOLUMES',
  fallback: 'MKV_FALLBACK',
  protect: 'MKV_PROTECT',
  port: 'MKV_PORT',
  host: 'MKV_HOST',
  healthInterval: 'MKV_HEALTH_INTERVAL',
  bodyTimeout: 'MKV_BODY_TIMEOUT',
  logLevel: 'MKV_LOG_LEVEL',
  logRequests: 'MKV_LOG_REQUESTS',
};

const OPTION_NAMES: Record<keyof ConfigInput, string> = {
  db: '--db',
  volumes: '--volumes',
  replicas: '--replicas',
  subvolumes: '--subvolumes',
  fallback: '--fallback',
  protect: '--protect',
  port: '--port',
  host: '--host',
  healthInterval: '--health-interval',
  bodyTimeout: '--body-timeout',
  logLevel: '--log-level',
  logRequests: '--log-requests',
};

/**
 * Merges CLI flags over environment variables over defaults, normalizes and
 * validates them, and returns the one MkvConfig the app injects. Throws
 * ConfigError with a single line naming the first bad option.
 */
export function loadConfig(flags: ConfigInput, env: NodeJS.ProcessEnv = {}): MkvConfig {
  const pick = <K extends keyof ConfigInput>(name: K): ConfigInput[K] | string | undefined =>
    flags[name] ?? env[CONFIG_ENV[name]];
  const fallback = pick('fallback');
  const plain = {
    db: pick('db') ?? CONFIG_DEFAULTS.db,
    volumes: parseVolumes(pick('volumes') ?? []),
    replicas: toInteger('replicas', pick('replicas') ?? CONFIG_DEFAULTS.replicas),
    subvolumes: toInteger('subvolumes', pick('subvolumes') ?? CONFIG_DEFAULTS.subvolumes),
    fallback: fallback ? fallback.replace(/\/+$/, '') : undefined,
    protect: toBoolean('protect', pick('protect') ?? false),
    port: toInteger('port', pick('port') ?? CONFIG_DEFAULTS.port),
    host: pick('host') ?? CONFIG_DEFAULTS.host,
    healthInterval: toNumber('healthInterval', pick('healthInterval') ?? CONFIG_DEFAULTS.healthInterval),
    bodyTimeout: toNumber('bodyTimeout', pick('bodyTimeout') ?? CONFIG_DEFAULTS.bodyTimeout),
    logLevel: pick('logLevel') ?? CONFIG_DEFAULTS.logLevel,
    logRequests: toBoolean('logRequests', pick('logRequests') ?? false),
  };
  if (plain.volumes.length === 0) throw new ConfigError(`invalid --volumes: at least one volume URL is required`);

  const config = plainToInstance(MkvConfig, plain);
  const [first] = validateSync(config, { forbidUnknownValues: true });
  if (first) {
    const reason = Object.values(first.constraints ?? {})[0] ?? 'is invalid';
    throw new ConfigError(`invalid ${OPTION_NAMES[first.property as keyof ConfigInput]}: ${reason}`);
  }
  return config;
}

/** `host:port` and `http://host:port/` both become `http://host:port`; the placement hash uses this form. */
export function normalizeVolumeUrl(raw: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new ConfigError(`invalid --volumes: '${raw}' is not a URL or host:port`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`invalid --volumes: '${raw}' must use http or https`);
  }
  if (url.search || url.hash || url.username) {
    throw new ConfigError(`invalid --volumes: '${raw}' must not have a query, fragment or credentials`);
  }
  return `${url.protocol}//${url.host}${url.pathname}`.replace(/\/+$/, '');
}

function parseVolumes(value: string | string[]): string[] {
  const items = (Array.isArray(value) ? value : value.split(','))
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
  const volumes = items.map(normalizeVolumeUrl);
  const seen = new Set<string>();
  for (const volume of volumes) {
    if (seen.has(volume)) throw new ConfigError(`invalid --volumes: ${volume} is listed twice`);
    seen.add(volume);
  }
  return volumes;
}

function toInteger(name: keyof ConfigInput, value: string | number): number {
  if (typeof value === 'number') return value;
  if (!/^-?\d+$/.test(value.trim())) throw new ConfigError(`invalid ${OPTION_NAMES[name]}: '${value}' is not a whole number`);
  return Number(value);
}

function toNumber(name: keyof ConfigInput, value: string | number): number {
  if (typeof value === 'number') return value;
  if (!/^\d+(\.\d+)?$/.test(value.trim())) throw new ConfigError(`invalid ${OPTION_NAMES[name]}: '${value}' is not a number`);
  return Number(value);
}

function toBoolean(name: keyof ConfigInput, value: string | boolean): boolean {
  if (typeof value === 'boolean') return value;
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['', '0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(`invalid ${OPTION_NAMES[name]}: '${value}' is not true or false`);
}
