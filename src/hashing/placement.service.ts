import { Injectable } from '@nestjs/common';
import { MkvConfig } from '../config/mkv-config';
import { blobUrl, placeKey, rankVolumes } from './rendezvous';

/**
 * Placement as an injectable so a team can provide its own (another hash, zone
 * awareness) under this class token without touching the write path.
 */
@Injectable()
export class PlacementService {
  constructor(private readonly config: MkvConfig) {}

  /** Every volume in this key's placement order (the first R are its replicas). */
  rank(key: string): string[] {
    return rankVolumes(key, this.config.volumes);
  }

  /** The volumes that should hold this key, first replica first. */
  replicasFor(key: string): string[] {
    return placeKey(key, this.config.volumes, this.config.replicas);
  }

  /** The URL of the key's blob on one volume. */
  blobUrl(key: string, volume: string): string {
    return blobUrl(key, volume, this.config.subvolumes);
  }
}
