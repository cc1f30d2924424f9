/**
 * mkv with its index in memory instead of SQLite: no index file is created
 * or opened. Read in-memory-key-index.ts for what that costs (everything is
 * lost on restart) and what a real store must keep from it.
 *
 *   bin/mkv --volumes ... serve --module examples/dist/in-memory-index/in-memory-index.module.js
 *
 * No REBUILD_STAGING is exported, so this index has no rebuild:
 * `POST /_admin/rebuild` is refused with `rebuild is not supported by this index`.
 */
import { Module } from '@nestjs/common';
import { JOB_STORE, KEY_INDEX, type MkvExtension } from 'mkv';
import { InMemoryJobStore } from './in-memory-job-store';
import { InMemoryKeyIndex } from './in-memory-key-index';

@Module({
  providers: [
    InMemoryKeyIndex,
    InMemoryJobStore,
    { provide: KEY_INDEX, useExisting: InMemoryKeyIndex },
    { provide: JOB_STORE, useExisting: InMemoryJobStore },
  ],
  exports: [KEY_INDEX, JOB_STORE],
})
export class InMemoryIndexModule {}

export const mkvExtension: MkvExtension = { index: InMemoryIndexModule };
