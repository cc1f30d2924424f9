import { Module } from '@nestjs/common';
import { JobsModule } from './jobs/jobs.module';
import { RebalanceModule } from './rebalance/rebalance.module';
import { RebuildModule } from './rebuild/rebuild.module';

/** The admin jobs (rebuild, rebalance) and their registry; AdminController is added by MkvModule. */
@Module({
  imports: [JobsModule, RebuildModule, RebalanceModule],
  exports: [JobsModule, RebuildModule, RebalanceModule],
})
export class AdminModule {}
