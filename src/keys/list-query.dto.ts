import { plainToInstance, Type } from 'class-transformer';
import { IsInt, IsOptional, IsString, Max, Min, validateSync } from 'class-validator';
import { MkvError, MkvErrorCode } from '../common/mkv-error';

export const DEFAULT_LIST_LIMIT = 1000;
export const MAX_LIST_LIMIT = 10000;

/** `?prefix=&limit=&start=` and minikeyvalue's `?list` / `?unlinked` flags. */
export class ListQueryDto {
  @IsOptional()
  @IsString()
  prefix?: string;

  @IsOptional()
  @IsString()
  start?: string;

  @IsOptional()
  @Type(() => Number)
  // Decorators run bottom-up and validation stops at the first failure: the type first.
  @Max(MAX_LIST_LIMIT, { message: `limit must be at most ${MAX_LIST_LIMIT}` })
  @Min(1, { message: 'limit must be at least 1' })
  @IsInt({ message: 'limit must be a whole number' })
  limit?: number;

  /** Present (any value) for minikeyvalue's `GET /{prefix}?list`. */
  @IsOptional()
  @IsString()
  list?: string;

  /** Present (any value) for `GET /{prefix}?unlinked`. */
  @IsOptional()
  @IsString()
  unlinked?: string;
}

/** Validates a raw query into ListQueryDto, or throws 400 with the first reason. */
export function parseListQuery(query: Record<string, unknown>): ListQueryDto {
  const dto = plainToInstance(ListQueryDto, query);
  const [first] = validateSync(dto, { stopAtFirstError: true });
  if (first) {
    const reason = Object.values(first.constraints ?? {})[0] ?? `${first.property} is invalid`;
    throw new MkvError(MkvErrorCode.InvalidRequest, reason);
  }
  return dto;
}
