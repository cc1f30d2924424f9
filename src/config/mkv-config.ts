import { IsBoolean, IsIn, IsInt, IsNumber, IsOptional, IsString, Matches, Max, Min, MinLength } from 'class-validator';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The server's whole configuration, validated once at start and injected everywhere else. */
export class MkvConfig {
  /** Path of the SQLite index file. */
  @IsString()
  @MinLength(1, { message: 'must name a file' })
  db: string;

  /** Normalized volume URLs (`http://host:port`, no trailing slash), in the order given. */
  @IsString({ each: true })
  volumes: string[];

  @IsInt({ message: 'must be a whole number' })
  @Min(1, { message: 'must be at least 1' })
  @Max(64, { message: 'must be at most 64' })
  replicas: number;

  @IsInt({ message: 'must be a whole number' })
  @Min(1, { message: 'must be at least 1' })
  @Max(256, { message: 'must be at most 256' })
  subvolumes: number;

  /** Server that answers GETs for keys this index does not know (a migration aid). */
  @IsOptional()
  @IsString()
  @Matches(/^https?:\/\/[^/\s]+(\/[^\s]*)?$/, { message: 'must be an http:// or https:// URL' })
  fallback?: string;

  /** Refuse DELETE of a live key: it must be unlinked first. */
  @IsBoolean()
  protect: boolean;

  @IsInt({ message: 'must be a whole number' })
  @Min(0, { message: 'must be from 0 to 65535' })
  @Max(65535, { message: 'must be from 0 to 65535' })
  port: number;

  @IsString()
  @MinLength(1, { message: 'must name an interface' })
  host: string;

  /** Seconds between two probes of each volume. */
  @IsNumber({}, { message: 'must be a number of seconds' })
  @Min(0.05, { message: 'must be at least 0.05 seconds' })
  @Max(3600, { message: 'must be at most 3600 seconds' })
  healthInterval: number;

  /**
   * Seconds a PUT waits for the next byte of its body before giving up on it
   * (408, the uploads discarded): a client that stops sending must not hold
   * its volume connections forever.
   */
  @IsNumber({}, { message: 'must be a number of seconds' })
  @Min(0.1, { message: 'must be at least 0.1 seconds' })
  @Max(3600, { message: 'must be at most 3600 seconds' })
  bodyTimeout: number;

  @IsIn(LOG_LEVELS, { message: `must be one of ${LOG_LEVELS.join(', ')}` })
  logLevel: LogLevel;

  /** Log one line per request (off by default: it costs throughput on the hot path). */
  @IsBoolean()
  logRequests: boolean;
}
