import { IsInt, IsOptional, IsString, Max, Min } from 'class-validator';
import { DecimalDigits } from '../common/query-validation';

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
  @DecimalDigits()
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

