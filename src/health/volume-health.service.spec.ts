import { loadConfig } from '../config/load-config';
import { FAILURES_TO_DOWN, VolumeHealth } from './volume-health.service';

const A = 'http://a:1';
const B = 'http://b:2';
const C = 'http://c:3';
const refused = { error: 'HEAD http://a:1/.mkv-probe: connect ECONNREFUSED', timedOut: false };
const timedOut = { error: 'HEAD http://a:1/.mkv-probe: no answer within 1000 ms', timedOut: true };
const answered = { latencyMs: 1 };

/** The probes' state machine: dead (refused, reset, 5xx) is `down`, no answer in time is `slow`. */
describe(VolumeHealth.name, () => {
  let health: VolumeHealth;
  let cameUp: string[];

  beforeEach(() => {
    health = new VolumeHealth(loadConfig({ db: ':memory:', volumes: 'a:1,b:2,c:3', replicas: 2 }));
    cameUp = [];
    health.onVolumeUp((volume) => cameUp.push(volume));
  });

  const stateOf = (volume: string) => health.statuses().find((s) => s.url === volume)!.state;
  const fail = (volume: string, outcome: typeof refused | typeof timedOut, times = FAILURES_TO_DOWN) => {
    for (let i = 0; i < times; i++) health.recordProbe(volume, outcome);
  };

  it('keeps a volume up after one failed probe: one bad answer is noise', () => {
    fail(A, refused, 1);
    expect(stateOf(A)).toBe('up');
  });

  it('marks a volume whose probes are refused twice down, and one whose probes time out twice slow, saying why', () => {
    fail(A, refused);
    fail(B, timedOut);
    expect([stateOf(A), stateOf(B)]).toEqual(['down', 'slow']);
    expect(health.statuses().find((s) => s.url === B)).toMatchObject({ consecutiveFailures: 2, lastError: timedOut.error });
    expect([health.isDown(A), health.isDown(B)]).toEqual([true, false]);
    expect([health.isUp(B), health.upCount()]).toEqual([false, 1]);
  });

  it('goes by the last failure: a slow volume that starts refusing is down, a down one that starts timing out is slow', () => {
    fail(A, timedOut);
    health.recordProbe(A, refused);
    expect(stateOf(A)).toBe('down');
    health.recordProbe(A, timedOut);
    expect(stateOf(A)).toBe('slow');
  });

  it('sends a read to the first replica up, else to the first only slow or suspect, and to none when all are down', () => {
    fail(A, timedOut);
    expect(health.readableReplica([A, B])).toBe(B);
    fail(B, timedOut);
    expect(health.readableReplica([A, B])).toBe(A); // a redirect to a slow volume beats a 503
    fail(A, refused);
    expect(health.readableReplica([A, B])).toBe(B);
    health.reportUnreachable(C, 'connect ECONNRESET');
    expect(health.readableReplica([A, C])).toBe(C);
    fail(B, refused);
    expect(health.readableReplica([A, B])).toBeUndefined();
  });

  it('brings a slow or down volume back up after two good probes, and tells the listeners once', () => {
    fail(A, timedOut);
    fail(B, refused);
    health.recordProbe(A, answered);
    health.recordProbe(B, answered);
    expect([stateOf(A), stateOf(B), cameUp]).toEqual(['slow', 'down', []]);
    health.recordProbe(A, answered);
    health.recordProbe(B, answered);
    health.recordProbe(A, answered);
    expect([stateOf(A), stateOf(B), cameUp]).toEqual(['up', 'up', [A, B]]);
  });

  it('makes an up volume suspect when a request cannot reach it, and up again at the next good probe', () => {
    health.reportUnreachable(A, 'connect ECONNREFUSED');
    expect([stateOf(A), health.isDown(A), health.mayReach(A)]).toEqual(['suspect', false, true]);
    health.recordProbe(A, answered);
    expect([stateOf(A), cameUp]).toEqual(['up', [A]]);
  });

  it('leaves a slow or down volume as it is when a request cannot reach it (only probes bring it back)', () => {
    fail(A, timedOut);
    fail(B, refused);
    health.reportUnreachable(A, 'x');
    health.reportUnreachable(B, 'x');
    expect([stateOf(A), stateOf(B)]).toEqual(['slow', 'down']);
    expect([health.mayReach(A), health.mayReach(B), health.mayReach(C), health.mayReach('http://unknown:9')]).toEqual([false, false, true, true]);
  });
});
