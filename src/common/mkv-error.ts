/** What went wrong, in the domain's words; the exception filter maps each to an HTTP status. */
export enum MkvErrorCode {
  InvalidRequest = 'invalid-request',
  BodyTimeout = 'body-timeout',
  NotFound = 'not-found',
  MethodNotAllowed = 'method-not-allowed',
  MustUnlinkFirst = 'must-unlink-first',
  KeyConflict = 'key-conflict',
  JobConflict = 'job-conflict',
  EmptyValue = 'empty-value',
  NotEnoughVolumes = 'not-enough-volumes',
  VolumeDown = 'volume-down',
  NoHealthyVolume = 'no-healthy-volume',
  VolumeWriteFailed = 'volume-write-failed',
  DatabaseError = 'database-error',
  CorruptRecord = 'corrupt-record',
  /** The MD5 of a streamed value could not be computed (its worker thread failed). */
  DigestFailed = 'digest-failed',
  /** What this server's index or volume client cannot do (a team's index without rebuild staging). */
  NotSupported = 'not-supported',
}

/** The one error type services throw; its message is the plain-text body the client reads. */
export class MkvError extends Error {
  constructor(
    readonly code: MkvErrorCode,
    message: string,
    /** For MethodNotAllowed: the methods the path does take (the Allow header). */
    readonly allowedMethods?: readonly string[],
  ) {
    super(message);
    this.name = 'MkvError';
  }

  static notFound(): MkvError {
    return new MkvError(MkvErrorCode.NotFound, 'not found');
  }

  /** A failure of the index's database as clients read it: `database error: <the driver's message>`. */
  static database(error: unknown): MkvError {
    if (error instanceof MkvError) return error;
    // TypeORM's QueryFailedError prefixes the driver's message with its class name ("SqliteError: ...").
    const cause = (error as { driverError?: unknown })?.driverError ?? error;
    return new MkvError(MkvErrorCode.DatabaseError, `database error: ${(cause as Error)?.message ?? String(cause)}`);
  }

  static methodNotAllowed(method: string, allowed: readonly string[]): MkvError {
    return new MkvError(MkvErrorCode.MethodNotAllowed, `method ${method} not allowed (allowed: ${allowed.join(', ')})`, allowed);
  }
}
