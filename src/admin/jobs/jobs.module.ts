import { Module } from '@nestjs/common';
import { JobsService } from './jobs.service';

/** The job registry; it keeps jobs in the index module's JOB_STORE. */
@Module({
  providers: [JobsService],
  exports: [JobsService],
})
export class JobsModule {}
