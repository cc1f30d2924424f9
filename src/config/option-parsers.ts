import { ConfigError } from './config-error';

/**
 * How each option's text becomes its value. `flag` is the option's long flag
 * (`--replicas`), for the message: a value from the environment is named by
 * its flag too. A value a caller already gives as a number, boolean or list
 * is taken as it is, so parsing twice (by commander, then by loadConfig)
 * changes nothing.
 */

export function toInteger(value: string | number, flag: string): number {
  if (typeof value === 'number') return value;
  if (!/^-?\d+$/.test(value.trim())) throw new ConfigError(`invalid ${flag}: '${value}' is not a whole number`);
  return Number(value);
}

export function toNumber(value: string | number, flag: string): number {
  if (typeof value === 'number') return value;
  if (!/^\d+(\.\d+)?$/.test(value.trim())) throw new ConfigError(`invalid ${flag}: '${value}' is not a number`);
  return Number(value);
}

export function toBoolean(value: string | boolean, flag: string): boolean {
  if (typeof value === 'boolean') return value;
  const v = value.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['', '0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(`invalid ${flag}: '${value}' is not true or false`);
}

/** A comma-separated list (or a list already split): blanks trimmed, empty items skipped. */
export function toList(value: string | string[]): string[] {
  return (Array.isArray(value) ? value : value.split(','))
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
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

export function toVolumes(value: string | string[]): string[] {
  const volumes = toList(value).map(normalizeVolumeUrl);
  const seen = new Set<string>();
  for (const volume of volumes) {
    if (seen.has(volume)) throw new ConfigError(`invalid --volumes: ${volume} is listed twice`);
    seen.add(volume);
  }
  return volumes;
}

/** Keys a rebalance moves at once. */
export function toConcurrency(value: string | number, flag: string): number {
  const n = typeof value === 'number' || /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new ConfigError(`invalid ${flag}: '${value}' is not a whole number from 1 to 64`);
  return n;
}

/** A URL without its trailing slashes; an empty one is no URL. */
export function toBaseUrl(value: string): string | undefined {
  return value ? value.replace(/\/+$/, '') : undefined;
}
