import { DynamicModule, Module } from '@nestjs/common';
import { provideAs, Replacement } from '../common/replacement';
import { HttpVolumeClient } from './http-volume.client';
import { VOLUME_CLIENT, VolumeClient } from './volume-client';

/**
 * VOLUME_CLIENT for every module: the nginx WebDAV client, or a team's
 * replacement. The stock client stays a provider either way, so a decorator
 * that injects it wraps an instance whose pools Nest still closes at shutdown.
 */
@Module({})
export class VolumesModule {
  static forRoot(volumeClient?: Replacement<VolumeClient>): DynamicModule {
    return {
      module: VolumesModule,
      global: true,
      providers: [HttpVolumeClient, provideAs(VOLUME_CLIENT, volumeClient, HttpVolumeClient)],
      exports: [VOLUME_CLIENT, HttpVolumeClient],
    };
  }
}
