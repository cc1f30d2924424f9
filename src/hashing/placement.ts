export const PLACEMENT = Symbol('PLACEMENT');

/**
 * Where keys live. The stock one is rendezvous hashing (RendezvousPlacement);
 * a team can provide another (zones, weights) under PLACEMENT: the write
 * path, reads, rebalance and rebuild all ask it.
 */
export interface Placement {
  /** Every volume in this key's placement order (the first R are its replicas). */
  rank(key: string): string[];
  /** The volumes that should hold this key, first replica first. */
  replicasFor(key: string): string[];
  /**
   * The URL of the key's blob on one volume: the volume URL, then an optional
   * directory of the placement's own (the stock one's /svXX), then the key's
   * path (encodeKeyPath). A rebuild finds a key's blob only where this puts it.
   */
  blobUrl(key: string, volume: string): string;
}
