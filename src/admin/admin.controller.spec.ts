import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { InMemoryVolumeClient } from '../../test/support/in-memory-volume.client';
import { ConfigModule } from '../config/config.module';
import { loadConfig } from '../config/load-config';
import { PLACEMENT } from '../hashing/placement';
import { MkvExceptionFilter } from '../http/mkv-exception.filter';
import { VOLUME_CLIENT } from '../volumes/volume-client';
import { AdminController } from './admin.controller';
import type { JobView } from './jobs/job';
import { JOB_STORE, JobStore } from './jobs/job-store';
import { JobsService } from './jobs/jobs.service';
import { RebalanceService } from './rebalance/rebalance.service';
import { RebuildService } from './rebuild/rebuild.service';

/** A team's index keeps its jobs but has no rebuild staging (no REBUILD_STAGING provider). */
class RecordingJobStore implements JobStore {
  readonly saved: JobView[] = [];
  async save(view: JobView) {
    this.saved.push(structuredClone(view));
  }
  async load(id: string) {
    return [...this.saved].reverse().find((view) => view.id === id);
  }
  async recent() {
    return [...new Map(this.saved.map((view) => [view.id, view])).values()].reverse();
  }
  async markInterrupted() {
    return 0;
  }
  async appendPlan() {}
  async planPage() {
    return [];
  }
}

describe(AdminController.name, () => {
  let app: NestFastifyApplication;
  let store: RecordingJobStore;
  let url: string;
  /** Over a real socket: the exception filter works on the request's socket, which an injected request lacks. */
  const request = async (method: string, path: string) => {
    const res = await fetch(`${url}${path}`, { method });
    return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
  };

  beforeEach(async () => {
    store = new RecordingJobStore();
    const moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot(loadConfig({ db: ':memory:', volumes: 'a:1,b:2', replicas: 2 }))],
      controllers: [AdminController],
      providers: [
        JobsService,
        RebuildService,
        { provide: JOB_STORE, useValue: store },
        { provide: PLACEMENT, useValue: {} },
        { provide: VOLUME_CLIENT, useValue: new InMemoryVolumeClient() },
        { provide: RebalanceService, useValue: {} },
      ],
    }).compile();
    moduleRef.useLogger(false); // a failed job logs an error by design
    app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter());
    app.useGlobalFilters(new MkvExceptionFilter());
    await app.listen(0, '127.0.0.1');
    url = await app.getUrl();
  });

  afterEach(() => app.close());

  // Was 202 with a job that then failed: a rebuild queued on an index that can never run one.
  it('POST /_admin/rebuild on an index without rebuild staging answers 501 and queues no job', async () => {
    expect(app.get(RebuildService).supported).toBe(false);
    expect(await request('POST', '/_admin/rebuild')).toEqual({
      status: 501,
      type: 'text/plain; charset=utf-8',
      body: 'rebuild is not supported by this index',
    });
    expect(store.saved).toEqual([]);
    const jobs = await request('GET', '/_admin/jobs');
    expect(JSON.parse(jobs.body)).toEqual({ jobs: [] });
  });

  it('an unknown parameter is still refused first, as on every index: 400', async () => {
    const res = await request('POST', '/_admin/rebuild?dryRun=true');
    expect([res.status, res.body]).toEqual([400, 'unknown parameter dryRun']);
    expect(store.saved).toEqual([]);
  });
});
