import 'reflect-metadata';
import { Command, CommanderError, Option } from 'commander';
import { CONFIG_DEFAULTS, ConfigError, ConfigInput, loadConfig } from './config/load-config';
import { IndexInUseError } from './index/index-in-use.error';
import { DEFAULT_REBALANCE_CONCURRENCY } from './admin/rebalance/rebalance-defaults';

/** Bad usage, or an index another mkv owns, exits 2 (as a shell builtin would); failures at run time exit 1. */
const EXIT_USAGE = 2;
/** How often the server checks that its index files can still be written. */
const INDEX_WATCH_MS = 1000;

function buildProgram(): Command {
  const program = new Command('mkv')
    .description('A blob store index over nginx WebDAV volumes: PUT fans out to R volumes, GET redirects to one.')
    .option('-d, --db <path>', `SQLite index file [env MKV_DB] (default: ${CONFIG_DEFAULTS.db})`)
    .option('-v, --volumes <urls>', 'comma-separated volume URLs or host:port [env MKV_VOLUMES] (required)')
    .option('-r, --replicas <n>', `replicas per key [env MKV_REPLICAS] (default: ${CONFIG_DEFAULTS.replicas})`)
    .option('--subvolumes <n>', `subdirectories per volume, /sv00../svNN [env MKV_SUBVOLUMES] (default: ${CONFIG_DEFAULTS.subvolumes})`)
    .option('--fallback <url>', 'redirect GETs of unknown keys to this server [env MKV_FALLBACK]')
    .addOption(new Option('--protect', 'refuse DELETE of a live key: UNLINK it first [env MKV_PROTECT]'))
    .option('--log-level <level>', `fatal, error, warn, info, debug or trace [env MKV_LOG_LEVEL] (default: ${CONFIG_DEFAULTS.logLevel})`)
    .showHelpAfterError('(run mkv --help for usage)')
    .exitOverride();

  program
    .command('serve')
    .description('serve the key API over HTTP')
    .option('-p, --port <port>', `port to listen on [env MKV_PORT] (default: ${CONFIG_DEFAULTS.port})`)
    .option('--host <address>', `address to bind [env MKV_HOST] (default: ${CONFIG_DEFAULTS.host})`)
    .option('--health-interval <seconds>', `seconds between probes of each volume [env MKV_HEALTH_INTERVAL] (default: ${CONFIG_DEFAULTS.healthInterval})`)
    .option('--body-timeout <seconds>', `seconds a PUT waits for the next byte of its body (then 408) [env MKV_BODY_TIMEOUT] (default: ${CONFIG_DEFAULTS.bodyTimeout})`)
    .option('--log-requests', 'log one line per request (costs throughput) [env MKV_LOG_REQUESTS]')
    .action(async (options: ConfigInput, command: Command) => {
      const config = loadConfig({ ...command.parent!.opts<ConfigInput>(), ...options }, process.env);
      // Loaded here, not at the top, so --help and bad options answer without booting Nest.
      const [{ createServer }, { MkvLogger }, { IndexOwner }] = await Promise.all([
        import('./http/create-server'),
        import('./logging/mkv-logger'),
        import('./index/sqlite/index-owner'),
      ]);
      const app = await createServer({ config });
      await app.listen(config.port, config.host);
      const address = app.getHttpServer().address();
      const port = typeof address === 'object' && address ? address.port : config.port;
      const logger = app.get(MkvLogger);
      logger.log(
        `mkv listening on http://${config.host}:${port} (index ${config.db}, ${config.volumes.length} volumes, ${config.replicas} replicas)`,
        'mkv',
      );
      // Not a graceful stop: the writes it would wait for cannot commit. Stopping here is a crash the index recovers from.
      app.get(IndexOwner).watchWritable(INDEX_WATCH_MS, (file, error) => {
        logger.fatal(`index file ${file} is no longer writable (${error.code}): stopping`, 'mkv');
        process.exit(1);
      });
    });
  program
    .command('rebuild')
    .description('rebuild the index from what the volumes hold (the serving index is swapped at the end)')
    .action(async (_options: object, command: Command) => {
      const config = loadConfig(command.parent!.opts<ConfigInput>(), process.env);
      const { runJob } = await import('./admin/cli/run-job');
      process.exitCode = await runJob({ config }, 'rebuild');
    });

  program
    .command('rebalance')
    .description('move every key to the volumes its placement names under the current volume list')
    .option('--dry-run', 'report the plan without touching a volume or the index')
    .option('--concurrency <n>', `keys moved at once (default: ${DEFAULT_REBALANCE_CONCURRENCY})`)
    .action(async (options: { dryRun?: boolean; concurrency?: string }, command: Command) => {
      const config = loadConfig(command.parent!.opts<ConfigInput>(), process.env);
      const concurrency = parseConcurrency(options.concurrency);
      const { runJob } = await import('./admin/cli/run-job');
      process.exitCode = await runJob({ config }, 'rebalance', { dryRun: options.dryRun, concurrency });
    });
  return program;
}

function parseConcurrency(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new ConfigError(`invalid --concurrency: '${value}' is not a whole number from 1 to 64`);
  return n;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed its message; help and version are not errors.
      process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE);
    }
    // Both are refusals to start, not failures: nothing has been touched.
    if (error instanceof ConfigError || error instanceof IndexInUseError) {
      console.error(`mkv: ${error.message}`);
      process.exit(EXIT_USAGE);
    }
    console.error(`mkv: ${(error as Error)?.message ?? String(error)}`);
    process.exit(1);
  }
}

void main(process.argv);
