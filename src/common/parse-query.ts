import { ClassConstructor, plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { MkvError, MkvErrorCode } from './mkv-error';

/**
 * Validates a query string into its DTO, or throws 400 with the first reason.
 * `strict` also refuses parameters the DTO does not know: for admin actions,
 * where a misspelt `dryRun` must not start a real run.
 */
export function parseQuery<T extends object>(dto: ClassConstructor<T>, query: Record<string, unknown>, { strict = false } = {}): T {
  const value = plainToInstance(dto, query);
  const [first] = validateSync(value, { stopAtFirstError: true, whitelist: strict, forbidNonWhitelisted: strict, forbidUnknownValues: false });
  if (first) {
    const constraints = first.constraints ?? {};
    const reason = constraints.whitelistValidation
      ? `unknown parameter ${first.property}`
      : (Object.values(constraints)[0] ?? `${first.property} is invalid`);
    throw new MkvError(MkvErrorCode.InvalidRequest, reason);
  }
  return value;
}
