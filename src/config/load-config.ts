import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { ConfigError } from './config-error';
import { MkvConfig } from './mkv-config';
import { CONFIG_OPTIONS, longFlag, resolveOption } from './options';

export { ConfigError } from './config-error';
export { normalizeVolumeUrl } from './option-parsers';

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

/**
 * Merges CLI flags over environment variables over defaults (the variables
 * and defaults of CONFIG_OPTIONS), normalizes and validates them, and returns
 * the one MkvConfig the app injects. Throws ConfigError with a single line
 * naming the first bad option.
 */
export function loadConfig(flags: ConfigInput, env: NodeJS.ProcessEnv = {}): MkvConfig {
  const plain: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(CONFIG_OPTIONS)) plain[name] = resolveOption(spec, flags[name as keyof ConfigInput], env);
  if (!(plain.volumes as string[] | undefined)?.length) throw new ConfigError(`invalid --volumes: at least one volume URL is required`);

  const config = plainToInstance(MkvConfig, plain);
  const [first] = validateSync(config, { forbidUnknownValues: true });
  if (first) {
    const reason = Object.values(first.constraints ?? {})[0] ?? 'is invalid';
    throw new ConfigError(`invalid ${longFlag(CONFIG_OPTIONS[first.property as keyof ConfigInput])}: ${reason}`);
  }
  return config;
}
