/** Keys a rebalance moves at once unless told otherwise (the CLI reads this without loading Nest). */
export const DEFAULT_REBALANCE_CONCURRENCY = 8;
