import { ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { ClassConstructor, Transform } from 'class-transformer';
import { getMetadataStorage } from 'class-validator';
import { MkvError, MkvErrorCode } from './mkv-error';

/**
 * `@Query(queryPipe) query: SomeQueryDto`: Nest's ValidationPipe turns the
 * query string into its DTO, and a bad one into the domain's 400 with the
 * first reason (`limit must be a whole number`). `strict` also refuses
 * parameters the DTO does not know: for admin actions, where a misspelt
 * `dryRun` must not start a real run.
 */
export class QueryValidationPipe extends ValidationPipe {
  constructor(private readonly strict: boolean) {
    super({ transform: true, stopAtFirstError: true, forbidUnknownValues: false, exceptionFactory: firstReason });
  }

  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    // Before the ValidationPipe, which deletes `__proto__` and `constructor` from the value.
    if (this.strict && metadata.metatype) refuseUnknownParameters(metadata.metatype as ClassConstructor<object>, value as Record<string, unknown>);
    return super.transform(value, metadata);
  }
}

/** Unknown parameters are ignored (the key API's listings). */
export const queryPipe = new QueryValidationPipe(false);
/** Unknown parameters are refused: `unknown parameter <name>`. */
export const strictQueryPipe = new QueryValidationPipe(true);

function firstReason(errors: ValidationError[]): MkvError {
  const [first] = errors;
  return new MkvError(MkvErrorCode.InvalidRequest, Object.values(first?.constraints ?? {})[0] ?? `${first?.property} is invalid`);
}

/**
 * Every own key of the parsed query, `__proto__` and `constructor` included
 * (the query parser makes them own keys of a null-prototype object, which
 * class-transformer and class-validator's whitelist never look at).
 */
function refuseUnknownParameters(dto: ClassConstructor<object>, query: Record<string, unknown>): void {
  const known = new Set(getMetadataStorage().getTargetValidationMetadatas(dto, '', true, false).map((metadata) => metadata.propertyName));
  const unknown = Object.keys(query ?? {}).find((name) => !known.has(name));
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
