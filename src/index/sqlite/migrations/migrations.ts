import { InitialSchema1763700000000 } from './1763700000000-initial-schema';
import { Jobs1763800000000 } from './1763800000000-jobs';
import { PendingDeletes1763900000000 } from './1763900000000-pending-deletes';
import { IndexUsage1764000000000 } from './1764000000000-index-usage';
import { UsageUpsertTriggers1764100000000 } from './1764100000000-usage-upsert-triggers';

/** Every migration of the index file, oldest first. */
export const MIGRATIONS = [InitialSchema1763700000000, Jobs1763800000000, PendingDeletes1763900000000, IndexUsage1764000000000, UsageUpsertTriggers1764100000000];
