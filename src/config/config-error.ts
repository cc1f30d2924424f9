/** A configuration value that cannot be used; the message names the option. */
export class ConfigError extends Error {}
