#!/usr/bin/env node
/**
 * A CPU profile of `mkv serve` under one operation, and where its time goes.
 *
 *   npm run build && node bench/profile.js GET|HEAD|PUT|PUTOVER|DELETE [seconds]   (npm run profile -- GET 5)
 *
 * Starts 3 nginx volumes on tmpfs (/dev/shm, or BENCH_DIR) and `mkv serve`
 * with R=2 under `node --cpu-prof`, seeds the index and the volumes with
 * bench/fill-index.js (KEYS keys, 20,000 by default, of 1 KiB), warms the
 * server up with the same operation for 2 s on other keys, then drives the
 * operation for `seconds` (5 by default) with 100 connections:
 *   GET       wrk over the seeded keys (the 302 alone)
 *   HEAD      ab -i -k on one seeded key (wrk cannot do HEAD)
 *   PUT       wrk, 1 KiB values to keys that do not exist
 *   PUTOVER   wrk, 1 KiB values to the seeded keys: every PUT an overwrite
 *   DELETE    wrk over a pool of seeded keys large enough that every DELETE
 *             hits a key that exists (errors are counted and printed)
 * Then it stops mkv with SIGINT, so the profile is written, and prints the
 * requests, the server's CPU per request (user+system from /proc/<pid>/stat)
 * and a summary of the profile's samples taken in the measured window only
 * (not start-up, seeding or warm-up): self time by function (top 30) and by
 * package (fastify, @nestjs/core, prom-client, ...; better-sqlite3's native
 * statement calls; mkv's own files by path; node internals; V8's garbage
 * collector).
 * The .cpuprofile stays in PROFILE_DIR (default: <tmp>/mkv-profiles): open it
 * in Chrome DevTools (Performance, or chrome://inspect's profiler) or
 * https://www.speedscope.app for a flame graph.
 *
 * A profile is one run on a shared machine: compare builds with the bench's
 * interleaved rounds, not two profiles. Every process it starts is stopped by
 * its PID at the end.
 */
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { freePort, sleep, stopStarted } = require('./processes');

const ROOT = path.resolve(__dirname, '..');
const OPERATIONS = ['GET', 'HEAD', 'PUT', 'PUTOVER', 'DELETE'];
const op = (process.argv[2] ?? '').toUpperCase();
const SECONDS = Number(process.argv[3] ?? 5);
const WARM_UP_SECONDS = 2;
const KEYS = Number(process.env.KEYS ?? 20000);
// DELETE deletes each key once: a pool no run on this machine gets through.
const DELETES_PER_SECOND_BOUND = 12000;
const CONNECTIONS = 100;
const THREADS = 2;
const TOP_FUNCTIONS = 30;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const PROFILE_DIR = process.env.PROFILE_DIR ?? path.join(os.tmpdir(), 'mkv-profiles');
// Makes better-sqlite3's native statement calls visible in the profile (see the file).
const SQLITE_CALLS = path.join(__dirname, 'profile-sqlite-calls.js');

const started = []; // child processes, or { pidFile } for the nginx daemons: what cleanUp stops
let base;

/** Before anything is started: a usage error. */
function fail(message) {
  console.error(`profile: ${message}`);
  process.exit(1);
}

async function waitFor(url, child) {
  for (let i = 0; i < 300; i++) {
    if (child && child.exitCode !== null) throw new Error(`mkv exited ${child.exitCode} before it was ready`);
    if (await fetch(url).then((r) => r.ok, () => false)) return;
    await sleep(100);
  }
  throw new Error(`${url} never answered`);
}

/** utime + stime of a running process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat). */
function cpuTicks(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** The monotonic clock in µs: the clock V8 stamps a profile's samples with. */
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

/** Runs a command to its end; its stdout. */
function run(command, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    started.push(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} exited ${code}: ${err.trim().slice(0, 500)}`))));
  });
}

/** wrk for `seconds` over `keys` keys at `prefix` (bench/wrk-keys.lua); requests answered, and those of 400 and up or lost. */
async function wrk(url, { method, prefix, keys, seconds }) {
  const out = await run('wrk', [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${seconds}s`, '--timeout', '10s', '-s', path.join(__dirname, 'wrk-keys.lua'), url], {
    METHOD: method,
    KEY_PREFIX: prefix,
    KEYS: String(keys),
    THREADS: String(THREADS),
  });
  const r = JSON.parse(out.split('\n').find((l) => l.startsWith('{"requests"')));
  return { requests: r.requests, errors: r.bad_status + r.socket_errors, seconds: r.duration_us / 1e6 };
}

/** ab HEAD with keep-alive on one URL for `seconds`. */
async function abHead(url, seconds) {
  const out = await run('ab', ['-i', '-k', '-q', '-r', '-c', String(CONNECTIONS), '-t', String(seconds), '-n', '100000000', url]);
  const field = (label) => Number(new RegExp(`^${label}:\\s+([\\d.]+)`, 'm').exec(out)?.[1] ?? 0);
  return { requests: field('Complete requests'), errors: field('Failed requests') + field('Non-2xx responses'), seconds: field('Time taken for tests') };
}

/** The operation's load: `phase` is 'warm-up' (other keys) or 'measured'. */
function drive(url, phase) {
  const seconds = phase === 'warm-up' ? WARM_UP_SECONDS : SECONDS;
  const seeded = phase === 'warm-up' ? '/warm-up/k' : '/bench/k';
  switch (op) {
    case 'GET':
      return wrk(url, { method: 'GET', prefix: seeded, keys: KEYS, seconds });
    case 'HEAD':
      return abHead(`${url}${seeded}1`, seconds);
    case 'PUT':
      return wrk(url, { method: 'PUT', prefix: phase === 'warm-up' ? '/warm-up/new/k' : '/new/k', keys: 10_000_000, seconds });
    case 'PUTOVER':
      return wrk(url, { method: 'PUT', prefix: seeded, keys: KEYS, seconds });
    case 'DELETE':
      return wrk(url, { method: 'DELETE', prefix: seeded, keys: deletePool(seconds), seconds });
  }
}

const deletePool = (seconds) => Math.max(KEYS, DELETES_PER_SECOND_BOUND * seconds);

function fillIndex(db, volumes, prefix, count) {
  execFileSync(process.execPath, [
    path.join(__dirname, 'fill-index.js'),
    ...['--db', db, '--volumes', volumes.map((v) => v.url).join(','), '--prefix', prefix, '--count', String(count)],
    ...['--data-dirs', volumes.map((v) => v.dataDir).join(',')],
  ]);
}

async function main() {
  if (!OPERATIONS.includes(op) || !(SECONDS > 0)) fail(`usage: node bench/profile.js ${OPERATIONS.join('|')} [seconds]`);
  if (!fs.existsSync(path.join(ROOT, 'dist/main.js'))) fail('run `npm run build` first');
  base = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()), 'mkv-profile-'));
  const ports = [await freePort(), await freePort(), await freePort()];
  const volumeDir = path.join(base, 'volumes');
  for (const port of ports) started.push({ pidFile: path.join(volumeDir, `vol-${port}`, 'nginx.pid') });
  execFileSync('bash', [path.join(ROOT, 'nginx/start-volumes.sh'), volumeDir, ...ports.map(String)], { stdio: 'ignore' });
  const volumes = ports.map((port) => ({ url: `http://127.0.0.1:${port}`, dataDir: path.join(volumeDir, `vol-${port}`, 'data') }));

  const db = path.join(base, 'index.db');
  const seeded = op === 'DELETE' ? deletePool(SECONDS) : KEYS;
  const warmUpSeeded = op === 'DELETE' ? deletePool(WARM_UP_SECONDS) : KEYS;
  process.stderr.write(`seeding ${seeded} + ${warmUpSeeded} keys of 1 KiB\n`);
  fillIndex(db, volumes, 'bench/k', seeded);
  fillIndex(db, volumes, 'warm-up/k', warmUpSeeded);

  const profileDir = path.join(PROFILE_DIR, `${op}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  fs.mkdirSync(profileDir, { recursive: true });
  const port = await freePort();
  // As bin/mkv runs it (its heap ceiling), under the profiler.
  const mkv = spawn(
    process.execPath,
    [
      '--cpu-prof',
      `--cpu-prof-dir=${profileDir}`,
      '--require',
      SQLITE_CALLS,
      '--max-old-space-size=256',
      path.join(ROOT, 'dist/main.js'),
      ...['-d', db, '-v', volumes.map((v) => v.url).join(','), '-r', '2', '--log-level', 'warn', 'serve', '-p', String(port)],
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  started.push(mkv);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/_admin/ready`, mkv);

  process.stderr.write(`warming up: ${op} for ${WARM_UP_SECONDS} s\n`);
  await drive(url, 'warm-up');
  process.stderr.write(`measuring: ${op} for ${SECONDS} s\n`);
  const cpuBefore = cpuTicks(mkv.pid);
  const window = { from: nowUs() };
  const result = await drive(url, 'measured');
  window.to = nowUs();
  const cpuUs = ((cpuTicks(mkv.pid) - cpuBefore) / CLK_TCK) * 1e6;

  // The requests wrk left in flight finish first (mkv would otherwise close
  // its index under them). Then SIGINT: mkv closes gracefully and exits, and
  // node writes the profile on its way out.
  await sleep(1000);
  const exited = new Promise((resolve) => mkv.once('exit', resolve));
  mkv.kill('SIGINT');
  await Promise.race([exited, sleep(20_000)]);
  const profileFile = fs
    .readdirSync(profileDir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => path.join(profileDir, f))[0];

  console.log(`\n${op}, ${SECONDS} s, ${CONNECTIONS} connections, mkv serve R=2 on 3 nginx volumes (tmpfs); load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`requests: ${result.requests} (${(result.requests / result.seconds).toFixed(0)}/s), errors: ${result.errors}`);
  console.log(`server CPU: ${(cpuUs / result.requests).toFixed(0)} µs per request (${(cpuUs / 1e6).toFixed(2)} s over the run; the profiler's own cost included)`);
  if (result.errors > 0) console.log(`warning: ${result.errors} requests failed or were answered 400 and up: the profile is not of the operation alone`);
  if (!profileFile) throw new Error(`mkv wrote no profile in ${profileDir}`);
  const sampled = summarize(JSON.parse(fs.readFileSync(profileFile, 'utf8')), window);
  if (sampled.busyUs > 1.2 * cpuUs) {
    console.log(
      `\nnote: the samples cover ${(sampled.busyUs / 1e6).toFixed(2)} s of non-idle wall time against ${(cpuUs / 1e6).toFixed(2)} s of CPU: V8 samples by the wall clock, ` +
        'and on a machine loaded beyond its cores the time mkv waited for a core is charged to the function it ran next, often a socket write ' +
        '(writeLatin1String, writev). Read the shares with that in mind, or profile on a quieter machine.',
    );
  }
  console.log(`\nprofile: ${profileFile}\n(open it in Chrome DevTools or https://www.speedscope.app for a flame graph)`);
}

// ---- the summary ----------------------------------------------------------

/** What a profile node's time is charged to: a package, one of mkv's files, node's internals, V8. */
function packageOf(url) {
  if (url.endsWith(SQLITE_CALLS)) return 'better-sqlite3 (native statement calls)';
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (inModules) return inModules[1];
  const dist = `${ROOT}/dist/`;
  if (url.includes(dist)) return `mkv: ${url.slice(url.indexOf(dist) + dist.length)}`;
  if (url.startsWith('node:')) return 'node internals';
  if (url.startsWith('wasm://')) return "wasm (undici's HTTP parser, llhttp)"; // node's own http parser is native
  return url;
}

/**
 * Self time by function and by package of the samples in `window` (µs of
 * the monotonic clock; the whole profile if the window misses it). A native
 * function with a node of its own (node's bindings: a socket write shows as
 * writeLatin1String) is charged to the package of the script that called it,
 * as "<package> (native)"; better-sqlite3's statement calls show through the
 * wrappers bench/profile-sqlite-calls.js puts around them.
 */
function summarize(profile, window) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parents = new Map();
  for (const n of profile.nodes) for (const child of n.children ?? []) parents.set(child, n);

  const inWindow = window.from >= profile.startTime && window.to <= profile.endTime;
  const self = new Map(); // node id -> µs
  let t = profile.startTime;
  let total = 0;
  profile.samples.forEach((id, i) => {
    t += profile.timeDeltas[i] ?? 0;
    if (inWindow && (t < window.from || t > window.to)) return;
    const dt = profile.timeDeltas[i + 1] ?? 0; // a sample's time runs to the next one
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });

  const chargeOf = (node) => {
    const { url, functionName } = node.callFrame;
    if (url) return packageOf(url);
    if (functionName.startsWith('(')) return `V8: ${functionName}`; // (garbage collector), (program), (idle)
    let caller = parents.get(node.id);
    while (caller && !caller.callFrame.url && !caller.callFrame.functionName.startsWith('(')) caller = parents.get(caller.id);
    return `${caller?.callFrame.url ? packageOf(caller.callFrame.url) : 'unknown'} (native)`;
  };

  const byFunction = new Map();
  const byPackage = new Map();
  for (const [id, us] of self) {
    const node = nodes.get(id);
    const { functionName, url, lineNumber } = node.callFrame;
    const charge = chargeOf(node);
    const where = url ? `${packageOf(url)}:${lineNumber + 1}` : charge;
    const name = `${functionName || '(anonymous)'}  ${where}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    byPackage.set(charge, (byPackage.get(charge) ?? 0) + us);
  }
  const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
  const ms = (us) => `${(us / 1000).toFixed(0).padStart(6)} ms`;
  const idle = byPackage.get('V8: (idle)') ?? 0;
  console.log(
    `\nprofile: ${(total / 1e6).toFixed(2)} s of samples ${inWindow ? 'in the measured window' : 'over the whole run (the measured window fell outside the profile)'}` +
      `, of which ${pct(idle).trim()} idle`,
  );
  console.log(`\nself time by function (top ${TOP_FUNCTIONS}):`);
  for (const [name, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, TOP_FUNCTIONS)) console.log(`${pct(us)} ${ms(us)}  ${name}`);
  console.log('\nself time by package (mkv by file; native calls charged to their caller):');
  for (const [name, us] of [...byPackage].sort((a, b) => b[1] - a[1])) if (us / total >= 0.001) console.log(`${pct(us)} ${ms(us)}  ${name}`);
  const mkvOwn = [...byPackage].filter(([name]) => name.startsWith('mkv: ')).reduce((sum, [, us]) => sum + us, 0);
  console.log(`${pct(mkvOwn)} ${ms(mkvOwn)}  (mkv's own files, all together)`);
  return { busyUs: total - idle };
}

// ---- stopping -------------------------------------------------------------

/** Stops every process this run started, by its PID, and removes the run's files (not the profile). */
async function cleanUp() {
  await stopStarted(started);
  if (base) fs.rmSync(base, { recursive: true, force: true });
}

process.once('SIGINT', () => void cleanUp().then(() => process.exit(130)));

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(cleanUp);
