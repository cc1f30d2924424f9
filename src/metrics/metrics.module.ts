import { Module } from '@nestjs/common';
import { JobsModule } from '../admin/jobs/jobs.module';
import { HealthModule } from '../health/health.module';
import { MkvMetrics } from './mkv-metrics.service';

@Module({
  imports: [HealthModule, JobsModule],
  providers: [MkvMetrics],
  exports: [MkvMetrics],
})
export class MetricsModule {}
