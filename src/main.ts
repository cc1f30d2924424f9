import 'reflect-metadata';
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, ConfigInput, loadConfig } from './config/load-config';
import { CLI_OPTIONS, MKV_OPTIONS, OptionCommand, OptionSpec, OptionValue, resolveOption } from './config/options';
import { IndexInUseError } from './index/index-in-use.error';
import type { ModuleRef } from '@nestjs/core';
import type { IndexOwner } from './index/sqlite/index-owner';
import type { MkvExtension } from './mkv-options';

/** Bad usage, or an index another mkv owns, exits 2 (as a shell builtin would); failures at run time exit 1. */
const EXIT_USAGE = 2;
/** How often the server checks that its index files can still be written. */
const INDEX_WATCH_MS = 1000;

function buildProgram(): Command {
  const program = new Command('mkv')
    .description('A blob store index over nginx WebDAV volumes: PUT fans out to R volumes, GET redirects to one.')
    .showHelpAfterError('(run mkv --help for usage)')
    .exitOverride();
  addOptions(program, 'global');

  const serve = program
    .command('serve')
    .description('serve the key API over HTTP')
    .action(async (_options: object, command: Command) => {
      const flags = givenFlags(command);
      const config = loadConfig(flags, process.env);
      const extension = await loadModules(flags);
      // Loaded here, not at the top, so --help and bad options answer without booting Nest.
      const [{ createServer }, { MkvLogger }, { IndexOwner }, { ModuleRef }] = await Promise.all([
        import('./http/create-server'),
        import('./logging/mkv-logger'),
        import('./index/sqlite/index-owner'),
        import('@nestjs/core'),
      ]);
      const app = await createServer({ config, ...extension });
      await app.listen(config.port, config.host);
      const address = app.getHttpServer().address();
      const port = typeof address === 'object' && address ? address.port : config.port;
      const logger = app.get(MkvLogger);
      // Only the SQLite index has an owner and files to watch: a team's index
      // (a --module giving `index`) has neither.
      const owner = optionalProvider<IndexOwner>(app.get(ModuleRef), IndexOwner);
      const index = owner ? `index ${config.db}` : 'index from a module';
      logger.log(`mkv listening on http://${config.host}:${port} (${index}, ${config.volumes.length} volumes, ${config.replicas} replicas)`, 'mkv');
      // Not a graceful stop: the writes it would wait for cannot commit. Stopping here is a crash the index recovers from.
      owner?.watchWritable(INDEX_WATCH_MS, (file, error) => {
        logger.fatal(`index file ${file} is no longer writable (${error.code}): stopping`, 'mkv');
        process.exit(1);
      });
    });
  addOptions(serve, 'serve');

  program
    .command('rebuild')
    .description('rebuild the index from what the volumes hold (the serving index is swapped at the end)')
    .action(async (_options: object, command: Command) => {
      const flags = givenFlags(command);
      const config = loadConfig(flags, process.env);
      const extension = await loadModules(flags);
      const { runJob } = await import('./admin/cli/run-job');
      process.exitCode = await runJob({ config, ...extension }, 'rebuild');
    });

  const rebalance = program
    .command('rebalance')
    .description('move every key to the volumes its placement names under the current volume list')
    .action(async (_options: object, command: Command) => {
      const flags = givenFlags(command);
      const config = loadConfig(flags, process.env);
      const concurrency = resolveOption(CLI_OPTIONS.concurrency, flags.concurrency, process.env) as number;
      const dryRun = flags.dryRun === true;
      const extension = await loadModules(flags);
      const { runJob } = await import('./admin/cli/run-job');
      process.exitCode = await runJob({ config, ...extension }, 'rebalance', { dryRun, concurrency });
    });
  addOptions(rebalance, 'rebalance');
  return program;
}

/**
 * A provider the app may not have, or undefined. Asked of a ModuleRef: the
 * app's own get logs a missing provider as an error before throwing.
 */
function optionalProvider<T>(moduleRef: ModuleRef, token: Function): T | undefined {
  try {
    return moduleRef.get<T>(token, { strict: false });
  } catch {
    return undefined;
  }
}

/** The options of one command, from the one table (src/config/options.ts). */
function addOptions(command: Command, which: OptionCommand): void {
  for (const spec of Object.values(MKV_OPTIONS).filter((option) => option.command === which)) command.addOption(commanderOption(spec));
}

/**
 * Commander shows the variable and the default in --help and fills them in
 * too, but only the flags given are used (givenFlags): loadConfig and
 * resolveOption apply the variables and defaults themselves, with the same
 * parsing as a flag's (commander takes any value of a switch's variable,
 * MKV_PROTECT=0 included, as "on"). No parser is given to commander for the
 * same reason, and because it would run it on every variable before --help:
 * a bad MKV_* would then stop `mkv --help`.
 */
function commanderOption(spec: OptionSpec): Option {
  const option = new Option(spec.flags, spec.description);
  if (spec.env !== undefined) option.env(spec.env);
  // A switch is off unless given: "(default: false)" says nothing.
  if (spec.default !== undefined && spec.default !== false) option.default(spec.default);
  if (spec.repeatable) option.argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
  return option;
}

type GivenFlags = ConfigInput & { module?: string[]; dryRun?: boolean; concurrency?: string };

/** The options given on the command line, to this command and before it, as commander collected them. */
function givenFlags(command: Command): GivenFlags {
  const given: Record<string, OptionValue> = {};
  for (let current: Command | null = command; current; current = current.parent) {
    for (const [name, value] of Object.entries(current.opts<Record<string, OptionValue>>())) {
      if (current.getOptionValueSource(name) === 'cli') given[name] ??= value;
    }
  }
  return given as GivenFlags;
}

/** The extensions --module or MKV_MODULES name, loaded and merged before Nest starts. */
async function loadModules(flags: GivenFlags): Promise<MkvExtension> {
  const paths = (resolveOption(CLI_OPTIONS.module, flags.module, process.env) as string[] | undefined) ?? [];
  if (paths.length === 0) return {};
  const { loadExtensions } = await import('./config/load-extensions');
  return loadExtensions(paths);
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
