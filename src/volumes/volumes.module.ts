import { Module } from '@nestjs/common';
import { HttpVolumeClient } from './http-volume.client';
import { VOLUME_CLIENT } from './volume-client';

@Module({
  providers: [{ provide: VOLUME_CLIENT, useClass: HttpVolumeClient }],
  exports: [VOLUME_CLIENT],
})
export class VolumesModule {}
