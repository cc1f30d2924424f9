import { Module } from '@nestjs/common';
import { HealthModule } from '../health/health.module';
import { ReplicasModule } from '../replicas/replicas.module';
import { KeyWriter } from './key-writer.service';
import { KeysService } from './keys.service';
import { Md5Worker } from './md5-worker';
import { ReplicaUpload } from './replica-upload';

/** The key services; the HTTP controller is added by MkvModule. */
@Module({
  imports: [HealthModule, ReplicasModule],
  providers: [Md5Worker, ReplicaUpload, KeyWriter, KeysService],
  exports: [KeyWriter, KeysService],
})
export class KeysModule {}
