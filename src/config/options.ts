import { DEFAULT_REBALANCE_CONCURRENCY } from '../admin/rebalance/rebalance-defaults';
import { toBaseUrl, toBoolean, toConcurrency, toInteger, toList, toNumber, toVolumes } from './option-parsers';

/** The command an option belongs to: `global` options are given before any command and apply to all. */
export type OptionCommand = 'global' | 'serve' | 'rebalance';

/** What a flag or an environment variable gives: text, or what a caller of loadConfig passes already typed. */
export type OptionValue = string | number | boolean | string[];

/**
 * One option, stated once: the CLI's --help, the environment variable and
 * the default loadConfig applies all come from here. Validation beyond
 * parsing is MkvConfig's (class-validator).
 */
export interface OptionSpec {
  /** As commander takes them: `-r, --replicas <n>`; without `<...>` the option is a switch. */
  flags: string;
  description: string;
  command: OptionCommand;
  /** Read when the flag is not given. */
  env?: string;
  /** Used when neither the flag nor the variable is given; --help shows it. */
  default?: string | number | boolean;
  /** Given several times, the values add up (the variable holds a comma-separated list). */
  repeatable?: boolean;
  /** Turns the value into what the option means; throws ConfigError naming `flag`. */
  parse?(value: OptionValue, flag: string): unknown;
}

/** Every option of MkvConfig, in its order; each key is the option's attribute name (`--log-level` -> logLevel). */
export const CONFIG_OPTIONS = {
  db: { flags: '-d, --db <path>', description: 'SQLite index file', command: 'global', env: 'MKV_DB', default: './data/index.db' },
  volumes: {
    flags: '-v, --volumes <urls>',
    description: 'comma-separated volume URLs or host:port; required',
    command: 'global',
    env: 'MKV_VOLUMES',
    parse: toVolumes,
  },
  replicas: { flags: '-r, --replicas <n>', description: 'replicas per key', command: 'global', env: 'MKV_REPLICAS', default: 3, parse: toInteger },
  subvolumes: {
    flags: '--subvolumes <n>',
    description: 'subdirectories per volume, /sv00../svNN',
    command: 'global',
    env: 'MKV_SUBVOLUMES',
    default: 1,
    parse: toInteger,
  },
  fallback: { flags: '--fallback <url>', description: 'redirect GETs of unknown keys to this server', command: 'global', env: 'MKV_FALLBACK', parse: toBaseUrl },
  protect: {
    flags: '--protect',
    description: 'refuse DELETE of a live key: UNLINK it first',
    command: 'global',
    env: 'MKV_PROTECT',
    default: false,
    parse: toBoolean,
  },
  port: { flags: '-p, --port <port>', description: 'port to listen on', command: 'serve', env: 'MKV_PORT', default: 3000, parse: toInteger },
  host: { flags: '--host <address>', description: 'address to bind', command: 'serve', env: 'MKV_HOST', default: '127.0.0.1' },
  healthInterval: {
    flags: '--health-interval <seconds>',
    description: 'seconds between probes of each volume',
    command: 'serve',
    env: 'MKV_HEALTH_INTERVAL',
    default: 2,
    parse: toNumber,
  },
  bodyTimeout: {
    flags: '--body-timeout <seconds>',
    description: 'seconds a PUT waits for the next byte of its body (then 408)',
    command: 'serve',
    env: 'MKV_BODY_TIMEOUT',
    default: 30,
    parse: toNumber,
  },
  logLevel: {
    flags: '--log-level <level>',
    description: 'fatal, error, warn, info, debug or trace',
    command: 'global',
    env: 'MKV_LOG_LEVEL',
    default: 'info',
  },
  logRequests: {
    flags: '--log-requests',
    description: 'log one line per request (costs throughput)',
    command: 'serve',
    env: 'MKV_LOG_REQUESTS',
    default: false,
    parse: toBoolean,
  },
} as const satisfies Record<string, OptionSpec>;

/** The options that are not configuration: what to load, and how a rebalance runs. */
export const CLI_OPTIONS = {
  module: {
    flags: '--module <path>',
    description: 'a Nest module or MkvExtension file to load, from the current directory; repeat for several (the variable: comma-separated)',
    command: 'global',
    env: 'MKV_MODULES',
    repeatable: true,
    parse: toList,
  },
  dryRun: { flags: '--dry-run', description: 'report the plan without touching a volume or the index', command: 'rebalance' },
  concurrency: {
    flags: '--concurrency <n>',
    description: 'keys moved at once',
    command: 'rebalance',
    default: DEFAULT_REBALANCE_CONCURRENCY,
    parse: toConcurrency,
  },
} as const satisfies Record<string, OptionSpec>;

/** Every option, configuration first: the order --help lists them in. */
export const MKV_OPTIONS: Record<string, OptionSpec> = { ...CONFIG_OPTIONS, ...CLI_OPTIONS };

/** The long flag that names the option in messages: `--replicas`. */
export function longFlag(spec: OptionSpec): string {
  return /--[a-z][a-z-]*/.exec(spec.flags)![0];
}

/**
 * What an option comes to: its flag, else its environment variable, else its
 * default, parsed. `undefined` when none is given and there is no default.
 */
export function resolveOption(spec: OptionSpec, flag: OptionValue | undefined, env: NodeJS.ProcessEnv): unknown {
  const value = flag ?? (spec.env === undefined ? undefined : env[spec.env]) ?? spec.default;
  if (value === undefined || !spec.parse) return value;
  return spec.parse(value, longFlag(spec));
}
