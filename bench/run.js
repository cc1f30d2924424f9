#!/usr/bin/env node
/**
 * mkv against the floor server, in one run.
 *
 *   npm run build && npm run bench     (ROUNDS=3 DURATION=3 KEYS=10000 by default; about 3 minutes)
 *
 * Starts 3 nginx volumes on tmpfs (/dev/shm, or BENCH_DIR), `mkv serve` with
 * R=2 on an index of KEYS keys, a second `mkv serve` on an index of
 * INDEX_KEYS (1,000,000) keys holding the same KEYS among them, the floor
 * server (bench/floor-server.js: bare Fastify doing only the work each
 * operation cannot go without, with mkv's drivers, on the small index's
 * file), and, for context, a bare Fastify server answering a constant 302
 * and an nginx server answering `return 302`. Both indexes are filled by
 * bench/fill-index.js through the project's own index code, the small one
 * with its blobs on the volumes.
 *
 * The targets are mkv's figures against the floor's: server CPU per request
 * (user+system from /proc/<pid>/stat, the steadiest figure on a shared
 * machine) and rate. Each round runs every mkv phase next to the floor's
 * (which goes first alternates from round to round), so a noisy machine hits
 * both alike; the ratios are of the medians over ROUNDS rounds. 100
 * connections, 1 KiB values, the same generator for both sides:
 *   PUT (new keys)     wrk, each key of a pool once (mkv: MKV_WRITE_KEYS,
 *                      the floor: FLOOR_WRITE_KEYS): the phase lasts as long
 *                      as the pool                       -> PUT target
 *   PUT (overwrites)   wrk, the same pool again: every key exists
 *                                                        -> overwrite target
 *   DELETE             wrk, the same pool once more: every DELETE hits a key
 *                      that exists                       -> DELETE target
 *   GET (302)          wrk for DURATION s over the KEYS keys, then the same on
 *                      the INDEX_KEYS index               -> GET, 1M-key targets
 *   HEAD               ab -i -k for DURATION s on one key (wrk cannot do
 *                      HEAD)                              -> HEAD target
 *   GETFULL            curl --parallel -L, every one of the KEYS keys once:
 *                      the 302 followed and the value read (context; its
 *                      ceiling is nginx's `return 302` to the same file)
 * and then, ROUNDS times, a PUT of one LARGE_MIB (256) MiB value with curl to
 * the floor and to mkv (a new key each round), and mkv's GETFULL of it, with
 * mkv's RSS sampled every 50 ms                            -> 256 MiB targets.
 * Context phases, first in each round (not targets: they show what nginx and
 * bare Fastify cost on this machine today): nginx PUT and DELETE of a pool of
 * NGINX_WRITE_KEYS files on one volume, nginx GET and HEAD of a file, nginx
 * `return 302` and Fastify's constant 302 (these four for CONTEXT_DURATION,
 * 2 s), nginx 302 + GET of the file, and one straight 256 MiB PUT and GET to
 * nginx.
 * Prints the machine and the load average (at the start and at the end), one
 * table of phases (medians with min-max, latency, server CPU per request and
 * the generator's, which shares the 2 cores) and one of the targets:
 * | figure | mkv | floor | ratio | target | met |.
 * Installs wrk, ab (apache2-utils), curl and nginx from Debian's packages
 * when it runs as root and they are missing. Every process it starts is
 * stopped by its PID at the end.
 */
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { freePort, sleep, stopStarted } = require('./processes');

const ROOT = path.resolve(__dirname, '..');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const DURATION = Number(process.env.DURATION ?? 3);
const KEYS = Number(process.env.KEYS ?? 10000);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 100);
const THREADS = 2;
// The pools the PUT, overwrite and DELETE phases write, write again and
// delete: about 2 s of PUTs each on this 2-core machine (some thousand
// requests, so the CPU per request is a few hundred clock ticks), and the
// DELETEs still last most of a second.
const MKV_WRITE_KEYS = Number(process.env.MKV_WRITE_KEYS ?? 6000);
const NGINX_WRITE_KEYS = Number(process.env.NGINX_WRITE_KEYS ?? 30000);
const FLOOR_WRITE_KEYS = Number(process.env.FLOOR_WRITE_KEYS ?? 10000);
// The timed context phases (nginx, Fastify constant 302) are shorter than
// the targets': they are there to show the machine, and keep the run near 3 minutes.
const CONTEXT_DURATION = Number(process.env.CONTEXT_DURATION ?? Math.min(DURATION, 2));
const WARM_UP_KEYS = 2000;
const INDEX_KEYS = Number(process.env.INDEX_KEYS ?? 1_000_000);
const LARGE_MIB = Number(process.env.LARGE_MIB ?? 256);
const TOOLS = { wrk: 'wrk', ab: 'apache2-utils', curl: 'curl', nginx: 'nginx-light' };
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const MiB = 2 ** 20;

const started = []; // child processes, or { pidFile } for the nginx daemons: what cleanUp stops
const results = new Map(); // phase name -> { generator, unit, runs: [] }
const keyCheckFailures = []; // phases whose answers show keys that were not what the phase needs
let base;
let interrupted = false; // by Ctrl-C: start nothing more

// ---- tools ----------------------------------------------------------------

const haveCommand = (name) => spawnSync('sh', ['-c', `command -v ${name}`]).status === 0 || fs.existsSync(`/usr/sbin/${name}`);

/** Installs the missing generators (and nginx) from Debian's packages, or says what to install. */
function ensureTools() {
  if (!fs.existsSync(path.join(ROOT, 'dist/main.js'))) fail('run `npm run build` first');
  const missing = Object.entries(TOOLS).filter(([command]) => !haveCommand(command)).map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  if (process.getuid() !== 0 || !haveCommand('apt-get')) fail(`missing tools; install them: apt-get install -y ${missing.join(' ')}`);
  process.stderr.write(`bench: installing ${missing.join(' ')} from Debian's packages\n`);
  // As in scripts/setup.sh: the nginx package must not start a system nginx on port 80.
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !fs.existsSync(policy);
  if (ownPolicy) fs.writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
    execFileSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } finally {
    if (ownPolicy) fs.rmSync(policy);
  }
}

function fail(message) {
  console.error(`bench: ${message}`);
  process.exit(1);
}

// ---- servers --------------------------------------------------------------

async function waitFor(url) {
  for (let i = 0; i < 200; i++) {
    if (await fetch(url, { redirect: 'manual' }).then((r) => r.status < 500, () => false)) return;
    await sleep(100);
  }
  throw new Error(`${url} never answered`);
}

const nginxBin = () => (fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx');

async function startVolumes() {
  const ports = [await freePort(), await freePort(), await freePort()];
  const dir = path.join(base, 'volumes');
  for (const port of ports) started.push({ pidFile: path.join(dir, `vol-${port}`, 'nginx.pid') });
  execFileSync('bash', [path.join(ROOT, 'nginx/start-volumes.sh'), dir, ...ports.map(String)], { stdio: 'ignore' });
  return ports.map((port) => ({ url: `http://127.0.0.1:${port}`, dataDir: path.join(dir, `vol-${port}`, 'data'), pidFile: path.join(dir, `vol-${port}`, 'nginx.pid') }));
}

async function startMkv(db, volumes) {
  const port = await freePort();
  const child = spawn(path.join(ROOT, 'bin/mkv'), ['-d', db, '-v', volumes.map((v) => v.url).join(','), '-r', '2', '--log-level', 'warn', 'serve', '-p', String(port)], { stdio: 'ignore' });
  started.push(child);
  return { url: `http://127.0.0.1:${port}`, pid: child.pid };
}

async function startFastify302() {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(__dirname, 'fastify-302.js'), String(port)], { stdio: 'ignore' });
  started.push(child);
  return { url: `http://127.0.0.1:${port}`, pid: child.pid };
}

async function startFloor(db, volumes) {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(__dirname, 'floor-server.js'), String(port), db, volumes.map((v) => v.url).join(',')], { stdio: 'ignore' });
  started.push(child);
  return { url: `http://127.0.0.1:${port}`, pid: child.pid };
}

/** nginx answering `return 302`; under /ceiling/ it redirects to that file on `volume`. */
async function startNginx302(volume) {
  const port = await freePort();
  const dir = path.join(base, 'nginx-302');
  fs.mkdirSync(dir, { recursive: true });
  const conf = fs
    .readFileSync(path.join(__dirname, 'nginx-302.conf.template'), 'utf8')
    .replaceAll('@@DIR@@', dir)
    .replaceAll('@@PORT@@', String(port))
    .replaceAll('@@VOLUME@@', volume.url);
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const pidFile = path.join(dir, 'nginx.pid');
  started.push({ pidFile });
  execFileSync(nginxBin(), ['-q', '-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')]);
  return { url: `http://127.0.0.1:${port}`, pidFile };
}

/** An nginx's worker processes (the master only hands out connections): the CPU is theirs. */
function nginxWorkers(server) {
  const master = Number(fs.readFileSync(server.pidFile, 'utf8'));
  return fs
    .readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === master;
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

function fillIndex(db, volumes, args) {
  const out = execFileSync(process.execPath, [path.join(__dirname, 'fill-index.js'), '--db', db, '--volumes', volumes.map((v) => v.url).join(','), ...args]);
  process.stderr.write(out);
}

// ---- measuring ------------------------------------------------------------

/** Fields 14 on of /proc/<pid>/stat, in clock ticks: utime, stime, cutime, cstime. */
function cpuFields(pid) {
  return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ').slice(11, 15).map(Number);
}

/** CPU time of running processes (utime + stime). */
const cpuTicks = (pids) => pids.reduce((ticks, pid) => ticks + cpuFields(pid)[0] + cpuFields(pid)[1], 0);

/**
 * CPU time of this process's children that have exited and been waited for
 * (cutime + cstime): the servers are still running, so over a phase it is
 * its generator's.
 */
const exitedChildrenTicks = () => cpuFields(process.pid)[2] + cpuFields(process.pid)[3];

const rssBytes = (pid) => Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;

/**
 * Runs one phase once; `serverPids` are the processes whose CPU time it
 * charges per request. `keys` says what the keys of a wrk PUT pool must be:
 * 'new' (every answer 201 Created) or 'existing' (none 201).
 */
async function measure(name, { generator, unit = 'req/s', serverPids, keys }, run) {
  const before = { server: cpuTicks(serverPids), generator: exitedChildrenTicks() };
  const r = await run();
  if (keys === 'new' && r.created !== r.answered) keyCheckFailures.push(`${name}: ${r.answered - r.created} of ${r.answered} answers were not 201 Created`);
  if (keys === 'existing' && r.created !== 0) keyCheckFailures.push(`${name}: ${r.created} of ${r.answered} answers were 201 Created (a new key)`);
  const perRequest = (ticks) => (ticks / CLK_TCK / r.answered) * 1e6;
  r.cpuUs = perRequest(cpuTicks(serverPids) - before.server);
  r.generatorCpuUs = perRequest(exitedChildrenTicks() - before.generator);
  if (!results.has(name)) results.set(name, { generator, unit, runs: [] });
  results.get(name).runs.push(r);
  return r;
}

/**
 * Collects a child's stdout; resolves when it exits (with any status when
 * `anyStatus`: curl's is that of its last failed transfer, which the output
 * already counts). `onData` sees the output so far.
 */
function run(command, args, { env, onData, anyStatus = false } = {}) {
  if (interrupted) return Promise.reject(new Error('interrupted'));
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: env && { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    started.push(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
      onData?.(out, child);
    });
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 || anyStatus ? resolve(out) : reject(new Error(`${command} exited ${code}: ${err.trim().slice(0, 500)}`))));
  });
}

/**
 * wrk over `keys` keys at `prefix`: for `seconds`, or with `once` each key
 * once (see wrk-keys.lua; then `seconds` only bounds a run that loses an
 * answer). The rate counts answers below 400 only.
 */
async function wrk(url, { method = 'GET', prefix, keys = KEYS, once = false, seconds = once ? 120 : DURATION }) {
  let signalled = false;
  const out = await run('wrk', [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${seconds}s`, '--timeout', '10s', '-s', path.join(__dirname, 'wrk-keys.lua'), url], {
    env: { METHOD: method, KEY_PREFIX: prefix, KEYS: String(keys), THREADS: String(THREADS), ONCE: once ? '1' : '0' },
    onData: (soFar, child) => {
      if (once && !signalled && soFar.split('\nthread done').length > THREADS) {
        signalled = true;
        child.kill('SIGINT');
      }
    },
  });
  const r = JSON.parse(out.split('\n').find((l) => l.startsWith('{"requests"')));
  const ok = r.requests - r.bad_status;
  return {
    rate: ok / (r.duration_us / 1e6),
    answered: r.requests,
    created: r.created, // counted with `once` only
    p50: r.p50_us / 1000,
    p99: r.p99_us / 1000,
    errors: r.socket_errors + r.bad_status,
  };
}

/** ab HEAD with keep-alive on one URL for `seconds` (ab takes a single URL). */
async function abHead(url, seconds = DURATION) {
  const csv = path.join(base, 'ab.csv');
  const out = await run('ab', ['-i', '-k', '-q', '-r', '-c', String(CONNECTIONS), '-t', String(seconds), '-n', '100000000', '-e', csv, url]);
  const field = (label) => Number(new RegExp(`^${label}:\\s+([\\d.]+)`, 'm').exec(out)?.[1] ?? 0);
  const percentile = (p) => Number(fs.readFileSync(csv, 'utf8').split('\n').find((l) => l.startsWith(`${p},`)).split(',')[1]);
  const answered = field('Complete requests');
  const errors = field('Failed requests') + field('Non-2xx responses');
  return { rate: (answered - field('Non-2xx responses')) / field('Time taken for tests'), answered, p50: percentile(50), p99: percentile(99), errors };
}

/** curl, CONNECTIONS transfers at a time, each of `count` URLs once (`url[0-N]` is curl's glob), following redirects. */
async function curlEach(urlGlob, count) {
  const t0 = process.hrtime.bigint();
  const out = await run('curl', ['-s', '-Z', '--parallel-immediate', '--parallel-max', String(CONNECTIONS), '-L', '-o', '/dev/null', '-w', '%{http_code} %{time_total}\n', urlGlob], {
    anyStatus: true,
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const lines = out.trim().split('\n').map((l) => l.split(' '));
  const times = lines.filter(([code]) => code === '200').map(([, t]) => Number(t) * 1000);
  return { rate: times.length / seconds, answered: lines.length, p50: percentile(times, 50), p99: percentile(times, 99), errors: count - times.length };
}

/** One large transfer with curl: an upload of `file` (PUT), or a download following redirects. */
async function curlLarge(url, file) {
  const args = file ? ['-T', file, '-H', 'Expect:'] : ['-L'];
  const out = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{time_total} %{size_upload} %{size_download}', ...args, url]);
  const [code, seconds, up, down] = out.split(' ').map(Number);
  const ok = code >= 200 && code < 300;
  return { rate: ok ? (up + down) / seconds / 1e6 : 0, answered: 1, errors: ok ? 0 : 1 };
}

/** Samples the pid's RSS every 50 ms while `work` runs; returns its result and the peak. */
async function withPeakRss(pid, work) {
  let peak = rssBytes(pid);
  const timer = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 50);
  try {
    return { result: await work(), peak: Math.max(peak, rssBytes(pid)) };
  } finally {
    clearInterval(timer);
  }
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

// ---- the phases -----------------------------------------------------------

/** Runs the given phases in order in odd rounds and in reverse in even ones: neither side always goes first. */
async function alternating(round, phases) {
  for (const phase of round % 2 === 1 ? phases : [...phases].reverse()) await phase();
}

async function smallValueRound(s, round) {
  // Context: what nginx and bare Fastify cost on the machine today.
  const vol0 = { generator: 'wrk', serverPids: s.vol0Workers };
  await measure('nginx PUT (one volume, new files)', { ...vol0, keys: 'new' }, () => wrk(s.volume.url, { method: 'PUT', prefix: '/ceiling/write/k', keys: NGINX_WRITE_KEYS, once: true }));
  await measure('nginx DELETE (each file once)', vol0, () => wrk(s.volume.url, { method: 'DELETE', prefix: '/ceiling/write/k', keys: NGINX_WRITE_KEYS, once: true }));
  const seconds = CONTEXT_DURATION;
  await measure('nginx GET of the file', vol0, () => wrk(s.volume.url, { prefix: '/ceiling/k', seconds }));
  await measure('nginx HEAD of the file', { generator: 'ab', serverPids: s.vol0Workers }, () => abHead(`${s.volume.url}/ceiling/k0`, seconds));
  await measure('nginx return 302', { generator: 'wrk', serverPids: s.nginx302Workers }, () => wrk(s.nginx302.url, { prefix: '/bench/k', seconds }));
  await measure('Fastify constant 302', { generator: 'wrk', serverPids: [s.fastify.pid] }, () => wrk(s.fastify.url, { prefix: '/bench/k', seconds }));

  // mkv next to the floor. The pool's keys are new to the first PUT, exist for
  // the second, and every DELETE hits one of them.
  const floor = { generator: 'wrk', serverPids: [s.floor.pid] };
  const mkv = { generator: 'wrk', serverPids: [s.mkv.pid] };
  const floorPool = { prefix: '/write/k', keys: FLOOR_WRITE_KEYS, once: true };
  const mkvPool = { prefix: '/write/k', keys: MKV_WRITE_KEYS, once: true };
  await alternating(round, [
    () => measure(PHASES.floorPut, { ...floor, keys: 'new' }, () => wrk(s.floor.url, { method: 'PUT', ...floorPool })),
    () => measure(PHASES.mkvPut, { ...mkv, keys: 'new' }, () => wrk(s.mkv.url, { method: 'PUT', ...mkvPool })),
  ]);
  await alternating(round, [
    () => measure(PHASES.floorPutOver, { ...floor, keys: 'existing' }, () => wrk(s.floor.url, { method: 'PUT', ...floorPool })),
    () => measure(PHASES.mkvPutOver, { ...mkv, keys: 'existing' }, () => wrk(s.mkv.url, { method: 'PUT', ...mkvPool })),
  ]);
  await alternating(round, [
    () => measure(PHASES.floorDelete, floor, () => wrk(s.floor.url, { method: 'DELETE', ...floorPool })),
    () => measure(PHASES.mkvDelete, mkv, () => wrk(s.mkv.url, { method: 'DELETE', ...mkvPool })),
  ]);
  // The big index's run next to the small one's, so the two see the same load.
  await alternating(round, [
    () => measure(PHASES.floorGet, floor, () => wrk(s.floor.url, { prefix: '/bench/k' })),
    () => measure(PHASES.mkvGet, mkv, () => wrk(s.mkv.url, { prefix: '/bench/k' })),
    () => measure(PHASES.mkvGetBig, { generator: 'wrk', serverPids: [s.mkvBig.pid] }, () => wrk(s.mkvBig.url, { prefix: '/bench/k' })),
  ]);
  await alternating(round, [
    () => measure(PHASES.floorHead, { generator: 'ab', serverPids: [s.floor.pid] }, () => abHead(`${s.floor.url}/bench/k0`)),
    () => measure(PHASES.mkvHead, { generator: 'ab', serverPids: [s.mkv.pid] }, () => abHead(`${s.mkv.url}/bench/k0`)),
  ]);
  await alternating(round, [
    () =>
      measure('nginx 302 + GET of the file', { generator: 'curl', serverPids: [...s.nginx302Workers, ...s.vol0Workers] }, () =>
        curlEach(`${s.nginx302.url}/ceiling/k[0-${KEYS - 1}]`, KEYS),
      ),
    () => measure('mkv GETFULL (302 + GET of the file)', { generator: 'curl', serverPids: [s.mkv.pid] }, () => curlEach(`${s.mkv.url}/bench/k[0-${KEYS - 1}]`, KEYS)),
  ]);
}

/**
 * PUT of one large value to the floor and to mkv (a new key each round, as
 * the 1 KiB PUT's), and mkv's GETFULL of it; mkv's RSS, and the floor's, are
 * sampled while they serve them. The values are deleted after the round
 * (not measured), so tmpfs holds one round's.
 */
async function largeValueRound(s, round, file, rss) {
  const large = `${LARGE_MIB} MiB`;
  const key = `/large/v${round}`;
  const vol0 = { generator: 'curl', unit: 'MB/s', serverPids: s.vol0Workers };
  const mkv = { generator: 'curl', unit: 'MB/s', serverPids: [s.mkv.pid] };
  const floor = { generator: 'curl', unit: 'MB/s', serverPids: [s.floor.pid] };
  const sampled = async (server, serverRss, work) => {
    const { result, peak } = await withPeakRss(server.pid, work);
    serverRss.peak = Math.max(serverRss.peak, peak);
    return result;
  };
  await measure(`nginx PUT ${large} (one volume)`, vol0, () => curlLarge(`${s.volume.url}/ceiling/large`, file));
  await alternating(round, [
    () => measure(PHASES.floorPutLarge, floor, () => sampled(s.floor, rss.floor, () => curlLarge(`${s.floor.url}${key}`, file))),
    () => measure(PHASES.mkvPutLarge, mkv, () => sampled(s.mkv, rss.mkv, () => curlLarge(`${s.mkv.url}${key}`, file))),
  ]);
  await measure(`nginx GET ${large}`, vol0, () => curlLarge(`${s.volume.url}/ceiling/large`));
  await measure(`mkv GETFULL ${large}`, mkv, () => sampled(s.mkv, rss.mkv, () => curlLarge(`${s.mkv.url}${key}`)));
  await Promise.all([s.mkv, s.floor].map((server) => fetch(`${server.url}${key}`, { method: 'DELETE' })));
}

/** The phases the targets compare, by role. */
const PHASES = {
  floorPut: 'floor PUT (two volumes, new keys)',
  mkvPut: 'mkv PUT (R=2, new keys)',
  floorPutOver: 'floor PUT (two volumes, existing keys)',
  mkvPutOver: 'mkv PUT (R=2, overwrites)',
  floorDelete: 'floor DELETE (two volumes)',
  mkvDelete: 'mkv DELETE (each key once)',
  floorGet: 'floor GET (SQLite read + 302)',
  mkvGet: 'mkv GET (302)',
  get mkvGetBig() {
    return `mkv GET (302), ${INDEX_KEYS} keys in the index`;
  },
  floorHead: 'floor HEAD (SQLite read + headers)',
  mkvHead: 'mkv HEAD',
  get floorPutLarge() {
    return `floor PUT ${LARGE_MIB} MiB (two volumes, no digest)`;
  },
  get mkvPutLarge() {
    return `mkv PUT ${LARGE_MIB} MiB (R=2)`;
  },
};

function writeLargeFile() {
  const file = path.join(base, 'large.bin');
  const chunk = Buffer.alloc(MiB);
  const fd = fs.openSync(file, 'w');
  for (let i = 0; i < LARGE_MIB; i++) fs.writeSync(fd, chunk.fill(i & 0xff));
  fs.closeSync(fd);
  return file;
}

const loadAverage = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

async function main() {
  ensureTools();
  const startedAt = Date.now();
  const loadAtStart = loadAverage();
  process.stderr.write(`load average at the start: ${loadAtStart}\n`);
  base = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()), 'mkv-bench-'));
  const volumes = await startVolumes();
  const s = { volume: volumes[0] };

  process.stderr.write(`filling the indexes (${KEYS} keys with their blobs, then ${INDEX_KEYS} keys)\n`);
  fillIndex(path.join(base, 'index.db'), volumes, ['--prefix', 'bench/k', '--count', String(KEYS), '--data-dirs', volumes.map((v) => v.dataDir).join(',')]);
  fillIndex(path.join(base, 'index-big.db'), volumes, ['--prefix', 'bench/k', '--count', String(INDEX_KEYS)]);
  s.mkv = await startMkv(path.join(base, 'index.db'), volumes);
  s.mkvBig = await startMkv(path.join(base, 'index-big.db'), volumes);
  s.fastify = await startFastify302();
  s.nginx302 = await startNginx302(s.volume);
  s.floor = await startFloor(path.join(base, 'index.db'), volumes);
  await Promise.all([s.fastify, s.nginx302, s.floor, ...volumes].map((server) => waitFor(`${server.url}/`)));
  await Promise.all([s.mkv, s.mkvBig].map((server) => waitFor(`${server.url}/_admin/ready`)));
  s.vol0Workers = nginxWorkers(s.volume);
  s.nginx302Workers = nginxWorkers(s.nginx302);
  // The files the nginx GET, HEAD and GETFULL ceilings read (not measured).
  await wrk(s.volume.url, { method: 'PUT', prefix: '/ceiling/k', once: true });
  // V8 compiles the servers' hot paths in their first second of load: not in
  // round 1's figures. GET for each, and a small pool PUT, PUT again and
  // deleted on mkv and the floor.
  for (const server of [s.mkv, s.mkvBig, s.fastify, s.floor]) await wrk(server.url, { prefix: '/bench/k', seconds: 1 });
  for (const server of [s.mkv, s.floor]) {
    for (const method of ['PUT', 'PUT', 'DELETE']) await wrk(server.url, { method, prefix: '/warm-up/k', keys: WARM_UP_KEYS, once: true });
  }

  for (let round = 1; round <= ROUNDS; round++) {
    process.stderr.write(`1 KiB round ${round}/${ROUNDS}\n`);
    await smallValueRound(s, round);
  }
  const file = writeLargeFile();
  const rss = { mkv: { baseline: rssBytes(s.mkv.pid), peak: 0 }, floor: { baseline: rssBytes(s.floor.pid), peak: 0 } };
  for (let round = 1; round <= ROUNDS; round++) {
    process.stderr.write(`${LARGE_MIB} MiB round ${round}/${ROUNDS}\n`);
    await largeValueRound(s, round, file, rss);
  }
  printReport({ rss, loadAtStart, loadAtEnd: loadAverage(), seconds: (Date.now() - startedAt) / 1000 });
}

// ---- the report -----------------------------------------------------------

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x, digits = 0) => (x === undefined || Number.isNaN(x) ? '' : x.toFixed(digits));
const runsOf = (name, field) => results.get(name).runs.map((r) => r[field]);
const figure = (name, field = 'rate') => median(runsOf(name, field));

function printReport({ rss, loadAtStart, loadAtEnd, seconds }) {
  const cpu = os.cpus();
  console.log(
    `\nmachine: ${cpu.length} cores (${cpu[0].model}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; node ${process.version}; ` +
      `${CONNECTIONS} connections (wrk -t${THREADS}, ab -c, curl --parallel-max), ${DURATION} s timed phases (context ${CONTEXT_DURATION} s), ${KEYS} keys, 1 KiB values; ${ROUNDS} rounds; volumes on ${base.startsWith('/dev/shm') ? 'tmpfs' : 'disk'}`,
  );
  console.log(`load average (1, 5, 15 min): ${loadAtStart} at the start, ${loadAtEnd} at the end; the run took ${fmt(seconds)} s\n`);
  console.log('| phase | generator | rate median (min-max) | unit | p50 ms | p99 ms | server CPU µs/req | generator CPU µs/req | errors |');
  console.log('|---|---|---:|---|---:|---:|---:|---:|---:|');
  for (const [name, { generator, unit, runs }] of results) {
    const rates = runs.map((r) => r.rate);
    const errors = runs.reduce((n, r) => n + r.errors, 0);
    console.log(
      `| ${name} | ${generator} | ${fmt(median(rates))} (${fmt(Math.min(...rates))}-${fmt(Math.max(...rates))}) | ${unit} | ` +
        `${fmt(median(runs.map((r) => r.p50)), 2)} | ${fmt(median(runs.map((r) => r.p99)), 2)} | ${fmt(median(runs.map((r) => r.cpuUs)))} | ${fmt(median(runs.map((r) => r.generatorCpuUs)))} | ${errors} |`,
    );
  }
  console.log(
    [
      '',
      'Rates count answers below 400 only; errors are socket errors and answers of 400 and up, over all rounds.',
      "Server CPU: user+system time of mkv, of the floor or Fastify server, or of the nginx workers serving the phase (the volume's, plus the 302",
      "server's for its GETFULL), per answered request; mkv's and the floor's leave out their volumes'. Generator CPU: wrk's, ab's or curl's, on the same 2 cores.",
      `The ${LARGE_MIB} MiB rows are one transfer a round: no percentiles, CPU per transfer.`,
    ].join('\n'),
  );
  console.log(
    keyCheckFailures.length === 0
      ? 'Keys: every PUT of new keys answered 201 Created, every PUT of existing keys did not, and a DELETE of a missing key would count as an error (404).'
      : `WARNING, keys not as the phase needs:\n  ${keyCheckFailures.join('\n  ')}`,
  );

  // [figure, mkv phase, floor phase, field, target, met(ratio)]
  const compared = [
    ['GET (302) server CPU µs/req', PHASES.mkvGet, PHASES.floorGet, 'cpuUs', '<= 1.6x', (r) => r <= 1.6],
    ['GET (302) rate, req/s', PHASES.mkvGet, PHASES.floorGet, 'rate', '>= 0.7x', (r) => r >= 0.7],
    ['HEAD server CPU µs/req', PHASES.mkvHead, PHASES.floorHead, 'cpuUs', '<= 1.6x', (r) => r <= 1.6],
    ['HEAD rate, req/s', PHASES.mkvHead, PHASES.floorHead, 'rate', '>= 0.7x', (r) => r >= 0.7],
    ['PUT 1 KiB R=2, new keys, server CPU µs/req', PHASES.mkvPut, PHASES.floorPut, 'cpuUs', '<= 1.4x', (r) => r <= 1.4],
    ['PUT 1 KiB R=2, overwrites, server CPU µs/req', PHASES.mkvPutOver, PHASES.floorPutOver, 'cpuUs', '<= 2x', (r) => r <= 2],
    ['DELETE server CPU µs/req', PHASES.mkvDelete, PHASES.floorDelete, 'cpuUs', '<= 1.25x', (r) => r <= 1.25],
    [`PUT ${LARGE_MIB} MiB R=2, MB/s`, PHASES.mkvPutLarge, PHASES.floorPutLarge, 'rate', '>= 0.75x', (r) => r >= 0.75],
  ];
  console.log('\nTargets: mkv against the floor server of this run (bench/floor-server.js). Ratio: of the medians over the rounds; in brackets the');
  console.log("lowest and highest of the rounds' own ratios (each round runs the two next to each other).\n");
  console.log('| figure | mkv | floor | ratio (rounds min-max) | target | met |');
  console.log('|---|---:|---:|---:|---|---|');
  const digits = (x) => (x < 10 ? 2 : 0);
  for (const [what, mkvPhase, floorPhase, field, target, met] of compared) {
    const mkvValue = figure(mkvPhase, field);
    const floorValue = figure(floorPhase, field);
    const ratio = mkvValue / floorValue;
    const perRound = runsOf(mkvPhase, field).map((v, i) => v / runsOf(floorPhase, field)[i]);
    const spread = perRound.length > 1 ? ` (${fmt(Math.min(...perRound), 2)}-${fmt(Math.max(...perRound), 2)})` : '';
    console.log(`| ${what} | ${fmt(mkvValue, digits(mkvValue))} | ${fmt(floorValue, digits(floorValue))} | ${fmt(ratio, 2)}${spread} | ${target} | ${met(ratio) ? 'yes' : 'no'} |`);
  }
  const growth = (side) => (side.peak - side.baseline) / MiB;
  console.log(
    `| RSS growth during the ${LARGE_MIB} MiB phases, MiB (baseline ${fmt(rss.mkv.baseline / MiB)}, peak ${fmt(rss.mkv.peak / MiB)}; the floor's during its PUTs) | ` +
      `${fmt(growth(rss.mkv))} | ${fmt(growth(rss.floor))} |  | mkv < 64 MiB | ${growth(rss.mkv) < 64 ? 'yes' : 'no'} |`,
  );
  const big = figure(PHASES.mkvGetBig);
  const small = figure(PHASES.mkvGet);
  const perRound = runsOf(PHASES.mkvGetBig, 'rate').map((v, i) => v / runsOf(PHASES.mkvGet, 'rate')[i]);
  const spread = perRound.length > 1 ? ` (${fmt(Math.min(...perRound), 2)}-${fmt(Math.max(...perRound), 2)})` : '';
  console.log(
    `| GET (302) rate with ${INDEX_KEYS} keys in the index, req/s (against: mkv with ${KEYS} keys, not the floor) | ${fmt(big)} | ${fmt(small)} (mkv, ${KEYS} keys) | ` +
      `${fmt(big / small, 2)}${spread} | >= 0.9x | ${big / small >= 0.9 ? 'yes' : 'no'} |`,
  );
}

// ---- stopping -------------------------------------------------------------

/** Stops every process this run started, by its PID, and waits until each is gone. */
async function cleanUp() {
  await stopStarted(started);
  if (base) fs.rmSync(base, { recursive: true, force: true });
}

process.once('SIGINT', () => {
  interrupted = true;
  void cleanUp().then(() => process.exit(130));
});

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(cleanUp);
