import { Module } from '@nestjs/common';
import { HealthModule } from '../health/health.module';
import { IndexModule } from '../index/index.module';
import { JobsModule } from '../jobs/jobs.module';
import { MkvMetrics } from './mkv-metrics.service';

@Module({
  imports: [HealthModule, IndexModule, JobsModule],
  providers: [MkvMetrics],
  exports: [MkvMetrics],
})
export class MetricsModule {}
