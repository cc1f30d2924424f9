import { Module } from '@nestjs/common';
import { HashingModule } from '../hashing/hashing.module';
import { HealthModule } from '../health/health.module';
import { IndexModule } from '../index/index.module';
import { VolumesModule } from '../volumes/volumes.module';
import { KeyLocks } from './key-locks';
import { KeyWriter } from './key-writer.service';
import { KeysService } from './keys.service';
import { ReplicaFiles } from './replica-files.service';

/** The key services; the HTTP controller is added by ServerModule. */
@Module({
  imports: [IndexModule, HashingModule, VolumesModule, HealthModule],
  providers: [KeyLocks, ReplicaFiles, KeyWriter, KeysService],
  exports: [KeyLocks, ReplicaFiles, KeyWriter, KeysService],
})
export class KeysModule {}
