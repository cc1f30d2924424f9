import { ClassConstructor, plainToInstance, Transform } from 'class-transformer';
import { getMetadataStorage, validateSync } from 'class-validator';
import { MkvError, MkvErrorCode } from './mkv-error';

/**
 * Validates a query string into its DTO, or throws 400 with the first reason.
 * `strict` also refuses parameters the DTO does not know: for admin actions,
 * where a misspelt `dryRun` must not start a real run.
 */
export function parseQuery<T extends object>(dto: ClassConstructor<T>, query: Record<string, unknown>, { strict = false } = {}): T {
  if (strict) refuseUnknownParameters(dto, query);
  const value = plainToInstance(dto, query);
  const [first] = validateSync(value, { stopAtFirstError: true, forbidUnknownValues: false });
  if (first) {
    const constraints = first.constraints ?? {};
    throw new MkvError(MkvErrorCode.InvalidRequest, Object.values(constraints)[0] ?? `${first.property} is invalid`);
  }
  return value;
}

/**
 * Every own key of the parsed query, `__proto__` and `constructor` included
 * (the query parser makes them own keys of a null-prototype object, which
 * class-transformer and class-validator's whitelist never look at).
 */
function refuseUnknownParameters(dto: ClassConstructor<object>, query: Record<string, unknown>): void {
  const known = new Set(getMetadataStorage().getTargetValidationMetadatas(dto, '', true, false).map((metadata) => metadata.propertyName));
  const unknown = Object.keys(query).find((name) => !known.has(name));
  if (unknown !== undefined) throw new MkvError(MkvErrorCode.InvalidRequest, `unknown parameter ${unknown}`);
}

/**
 * A whole-number query parameter: decimal digits only, so `1e3`, `0x10`, ` 8`
 * and `8.0` stay strings and fail the DTO's `@IsInt` (Number() would accept
 * every one of them).
 */
export function DecimalDigits(): PropertyDecorator {
  return Transform(({ value }: { value: unknown }) => (typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value));
}
