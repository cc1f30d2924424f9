/** Another live process owns the index file; the message is the one line the CLI prints. */
export class IndexInUseError extends Error {
  constructor(
    readonly db: string,
    readonly ownerPid: number | undefined,
    readonly advice?: string,
  ) {
    super(`index ${db} is in use by another mkv${ownerPid === undefined ? '' : ` (pid ${ownerPid})`}${advice ? `: ${advice}` : ''}`);
    this.name = 'IndexInUseError';
  }
}
