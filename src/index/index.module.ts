import { DynamicModule, Module } from '@nestjs/common';
import type { ModuleImport } from '../common/replacement';
import { SqliteIndexModule } from './sqlite/sqlite-index.module';

/**
 * KEY_INDEX, JOB_STORE and (where the index supports rebuilds)
 * REBUILD_STAGING for every module, from one index module: the SQLite file,
 * or a team's module that exports those tokens. Nothing of SQLite is opened
 * when a team's index is given.
 */
@Module({})
export class IndexModule {
  static forRoot(index: ModuleImport = SqliteIndexModule): DynamicModule {
    return { module: IndexModule, global: true, imports: [index], exports: [index] };
  }
}
