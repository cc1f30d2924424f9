import { Module } from '@nestjs/common';
import { IndexModule } from '../index/index.module';
import { JobStore } from './job.store';
import { JobsService } from './jobs.service';

@Module({
  imports: [IndexModule],
  providers: [JobStore, JobsService],
  exports: [JobsService],
})
export class JobsModule {}
