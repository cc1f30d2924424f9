import type { ModuleImport, Replacement } from './common/replacement';
import type { MkvConfig } from './config/mkv-config';
import type { Placement } from './hashing/placement';
import type { VolumeClient } from './volumes/volume-client';

/**
 * What a team adds to mkv or replaces in it, without editing it: given to
 * MkvModule.forRoot and createServer, or exported by a module that
 * `mkv serve --module` loads.
 */
export interface MkvExtension {
  /**
   * Modules to import: their controllers are served beside the key API, and
   * their APP_GUARD, APP_INTERCEPTOR and APP_PIPE providers apply to every
   * route, the key routes and the admin routes included.
   */
  imports?: ModuleImport[];
  /**
   * Another index: a module that exports KEY_INDEX (KeyIndex) and JOB_STORE
   * (JobStore), and REBUILD_STAGING (RebuildStaging) if it supports rebuilds.
   * When given, the SQLite file is never opened. Default: SqliteIndexModule.
   */
  index?: ModuleImport;
  /** Another volume client, or a decorator of the stock one (inject HttpVolumeClient). */
  volumeClient?: Replacement<VolumeClient>;
  /** Another placement, or a decorator of the stock one (inject RendezvousPlacement). */
  placement?: Replacement<Placement>;
}

export interface MkvModuleOptions extends MkvExtension {
  config: MkvConfig;
}
