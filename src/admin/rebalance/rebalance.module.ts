import { Module } from '@nestjs/common';
import { ReplicasModule } from '../../replicas/replicas.module';
import { RebalanceService } from './rebalance.service';

@Module({
  imports: [ReplicasModule],
  providers: [RebalanceService],
  exports: [RebalanceService],
})
export class RebalanceModule {}
