import { Module } from '@nestjs/common';
import { VolumeHealth } from './volume-health.service';

/** Volume health as the key and job services read it; the probing is added by the server. */
@Module({ providers: [VolumeHealth], exports: [VolumeHealth] })
export class HealthModule {}
