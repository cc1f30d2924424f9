import { Module } from '@nestjs/common';
import { HashingModule } from '../hashing/hashing.module';
import { IndexModule } from '../index/index.module';
import { VolumesModule } from '../volumes/volumes.module';
import { RebuildService } from './rebuild.service';

@Module({
  imports: [IndexModule, HashingModule, VolumesModule],
  providers: [RebuildService],
  exports: [RebuildService],
})
export class RebuildModule {}
