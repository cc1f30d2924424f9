import { Injectable } from '@nestjs/common';
import { MkvConfig } from '../config/mkv-config';
import type { Placement } from './placement';
import { blobUrl, placeKey, rankVolumes } from './rendezvous';

/** The stock placement: rendezvous hashing over the configured volumes (see rendezvous.ts). */
@Injectable()
export class RendezvousPlacement implements Placement {
  constructor(private readonly config: MkvConfig) {}

  rank(key: string): string[] {
    return rankVolumes(key, this.config.volumes);
  }

  replicasFor(key: string): string[] {
    return placeKey(key, this.config.volumes, this.config.replicas);
  }

  blobUrl(key: string, volume: string): string {
    return blobUrl(key, volume, this.config.subvolumes);
  }
}
