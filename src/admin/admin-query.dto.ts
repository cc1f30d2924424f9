import { Transform } from 'class-transformer';
import { IsBoolean, IsInt, IsOptional, Max, Min } from 'class-validator';
import { DecimalDigits } from '../common/query-validation';

/** `POST /_admin/rebalance?dryRun=true&concurrency=8` */
export class RebalanceQueryDto {
  @IsOptional()
  @Transform(({ value }) => (value === 'true' || value === '' ? true : value === 'false' ? false : value))
  @IsBoolean({ message: 'dryRun must be true or false' })
  dryRun?: boolean;

  @IsOptional()
  @DecimalDigits()
  @Max(64, { message: 'concurrency must be at most 64' })
  @Min(1, { message: 'concurrency must be at least 1' })
  @IsInt({ message: 'concurrency must be a whole number' })
  concurrency?: number;
}

/** `POST /_admin/rebuild` takes no options; an unknown parameter is refused rather than ignored. */
export class RebuildQueryDto {}
