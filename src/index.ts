/**
 * mkv's public API: what a team imports to run mkv in its own process, or to
 * extend it (another index, a volume client or its decorator, another
 * placement, guards, interceptors and controllers). See "Extending mkv" in
 * the README. Anything not exported here may change without notice.
 */
export { MkvModule } from './mkv.module';
export type { MkvExtension, MkvModuleOptions } from './mkv-options';
export { createServer } from './http/create-server';
export { runJob } from './admin/cli/run-job';
export type { ModuleImport, Replacement } from './common/replacement';

export { MkvConfig } from './config/mkv-config';
export { ConfigError, loadConfig } from './config/load-config';
export type { ConfigInput } from './config/load-config';
export { MkvError, MkvErrorCode } from './common/mkv-error';

export { KEY_INDEX } from './index/key-index';
export type { BeganWrite, IndexUsage, KeyIndex } from './index/key-index';
export type { FoundBlob, KeyRecord, KeyState, ListOptions, WriteIntent } from './index/key-record';
export { DIRECT_WRITE } from './index/key-record';
export { REBUILD_STAGING } from './index/rebuild-staging';
export type { RebuildStaging } from './index/rebuild-staging';
export { JOB_STORE } from './admin/jobs/job-store';
export type { JobStore } from './admin/jobs/job-store';
export type { JobCounters, JobKind, JobState, JobView, PlannedMove } from './admin/jobs/job';
export { SqliteIndexModule } from './index/sqlite/sqlite-index.module';
export { SqliteKeyIndex } from './index/sqlite/sqlite-key-index.repository';
export { SqliteRebuildStaging } from './index/sqlite/sqlite-rebuild-staging';
export { SqliteJobStore } from './index/sqlite/sqlite-job.store';
export { IndexInUseError } from './index/index-in-use.error';

export { VOLUME_CLIENT, VolumeError } from './volumes/volume-client';
export type { VolumeClient, VolumeEntry } from './volumes/volume-client';
export { HttpVolumeClient } from './volumes/http-volume.client';

export { PLACEMENT } from './hashing/placement';
export type { Placement } from './hashing/placement';
export { RendezvousPlacement } from './hashing/rendezvous-placement.service';
export { blobUrl, placeKey, rankVolumes } from './hashing/rendezvous';
export { encodeKeyPath } from './common/key-path';
