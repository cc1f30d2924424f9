import { Module } from '@nestjs/common';
import { KeyLocks } from './key-locks';
import { ReplicaFiles } from './replica-files.service';

/** What the key API and the admin jobs share about a key's replicas: its lock, and the file operations on its volumes. */
@Module({
  providers: [KeyLocks, ReplicaFiles],
  exports: [KeyLocks, ReplicaFiles],
})
export class ReplicasModule {}
