import { hash } from 'node:crypto';
import { encodeKeyPath } from '../common/key-path';

/**
 * Rendezvous (highest random weight) placement, exactly as the README states
 * it so anyone can compute where a key lives:
 *   score(key, volume) = SHA-256(utf8(key) ‖ utf8(volume))
 * volumes sorted by score descending (bytewise); the first R are the replicas.
 * Adding one volume to N moves about 1/(N+1) of the keys and nothing else.
 */
export function scoreVolume(key: string, volume: string): Buffer {
  // One-shot hash: half the cost of a Hash object, and a PUT scores every volume.
  return hash('sha256', key + volume, 'buffer'); // the UTF-8 of the two strings one after the other
}

/** All volumes in placement order for this key. */
export function rankVolumes(key: string, volumes: readonly string[]): string[] {
  return volumes
    .map((volume) => ({ volume, score: scoreVolume(key, volume) }))
    .sort((a, b) => Buffer.compare(b.score, a.score))
    .map((ranked) => ranked.volume);
}

/** The key's R replica volumes, first replica first. */
export function placeKey(key: string, volumes: readonly string[], replicas: number): string[] {
  return rankVolumes(key, volumes).slice(0, replicas);
}

/** With S > 1 subvolumes: big-endian uint32 of the score's last 4 bytes, mod S. */
export function subvolumeOf(key: string, volume: string, subvolumes: number): number {
  return scoreVolume(key, volume).readUInt32BE(28) % subvolumes;
}

/** `/svXX` (two upper-case hex digits) when subvolumes are in use, else empty. */
export function subvolumeDir(subvolume: number): string {
  return `/sv${subvolume.toString(16).toUpperCase().padStart(2, '0')}`;
}

/** Where the key's blob lives on one volume. */
export function blobUrl(key: string, volume: string, subvolumes: number): string {
  const dir = subvolumes > 1 ? subvolumeDir(subvolumeOf(key, volume, subvolumes)) : '';
  return `${volume}${dir}/${encodeKeyPath(key)}`;
}
