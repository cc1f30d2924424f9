import { Module } from '@nestjs/common';
import { HashingModule } from '../hashing/hashing.module';
import { IndexModule } from '../index/index.module';
import { KeysModule } from '../keys/keys.module';
import { VolumesModule } from '../volumes/volumes.module';
import { RebalanceService } from './rebalance.service';

@Module({
  imports: [IndexModule, HashingModule, VolumesModule, KeysModule],
  providers: [RebalanceService],
  exports: [RebalanceService],
})
export class RebalanceModule {}
