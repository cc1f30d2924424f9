#!/usr/bin/env node
/**
 * mkv against the machine's own ceilings, in one run.
 *
 *   npm run build && npm run bench     (ROUNDS=3 DURATION=3 KEYS=10000 by default)
 *
 * Starts 3 nginx volumes on tmpfs (/dev/shm), `mkv serve` with R=2 on an
 * index of KEYS keys, a second `mkv serve` on an index of INDEX_KEYS
 * (1,000,000) keys holding the same KEYS among them, a bare Fastify server
 * answering a constant 302, an nginx server answering `return 302`, and the
 * floor server (bench/floor-server.js: bare Fastify doing only the work each
 * operation cannot go without, on the small index's file). Both
 * indexes are filled by bench/fill-index.js through the project's own index
 * code, the small one with its blobs on the volumes. Then, ROUNDS times, with
 * 100 connections and 1 KiB values (each phase against mkv next to its
 * ceiling, driven by the same generator):
 *   PUT, DELETE   wrk, each of a pool of keys once (PUT writes the keys the
 *                 DELETE then deletes): the phase lasts as long as the pool
 *   GET (302)     wrk for DURATION s over the KEYS keys, also on the big index
 *   HEAD          ab -i -k for DURATION s, one key (wrk cannot do HEAD)
 *   GETFULL       curl --parallel -L, every one of the KEYS keys once: the
 *                 302 followed and the value read (wrk cannot follow it)
 * and then, ROUNDS times, PUT and GETFULL of one LARGE_MIB (256) MiB value
 * with curl, sampling mkv's RSS every 50 ms.
 * Prints the machine, one table of phases (medians with min-max, latency,
 * the server's CPU time per request from /proc/<pid>/stat, and the
 * generator's, which shares the 2 cores) and one of mkv's figures against
 * their ceilings and the targets, with the 1M-key ratios and the RSS growth.
 * Installs wrk, ab (apache2-utils), curl and nginx from Debian's packages
 * when it runs as root and they are missing. Every process it starts is
 * stopped by its PID at the end.
 */
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const DURATION = Number(process.env.DURATION ?? 3);
const KEYS = Number(process.env.KEYS ?? 10000);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 100);
const THREADS = 2;
// The pools the PUT-then-DELETE phases write and delete: 2 to 3 s of PUTs
// each on this 2-core machine, so that even the DELETEs last a second.
const MKV_WRITE_KEYS = Number(process.env.MKV_WRITE_KEYS ?? 8000);
const NGINX_WRITE_KEYS = Number(process.env.NGINX_WRITE_KEYS ?? 50000);
const FLOOR_WRITE_KEYS = Number(process.env.FLOOR_WRITE_KEYS ?? 16000);
const INDEX_KEYS = Number(process.env.INDEX_KEYS ?? 1_000_000);
const LARGE_MIB = Number(process.env.LARGE_MIB ?? 256);
const TOOLS = { wrk: 'wrk', ab: 'apache2-utils', curl: 'curl', nginx: 'nginx-light' };
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const MiB = 2 ** 20;

const started = []; // child processes, or { pidFile } for the nginx daemons: what cleanUp stops
const results = new Map(); // phase name -> { generator, unit, runs: [] }
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

const freePort = () =>
  new Promise((done) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });

async function waitFor(url) {
  for (let i = 0; i < 200; i++) {
    if (await fetch(url, { redirect: 'manual' }).then((r) => r.status < 500, () => false)) return;
    await sleep(100);
  }
  throw new Error(`${url} never answered`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
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

/** Runs one phase once; `serverPids` are the processes whose CPU time it charges per request. */
async function measure(name, { generator, unit = 'req/s', serverPids }, run) {
  const before = { server: cpuTicks(serverPids), generator: exitedChildrenTicks() };
  const r = await run();
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
  return { rate: ok / (r.duration_us / 1e6), answered: r.requests, p50: r.p50_us / 1000, p99: r.p99_us / 1000, errors: r.socket_errors + r.bad_status };
}

/** ab HEAD with keep-alive on one URL for DURATION seconds (ab takes a single URL). */
async function abHead(url) {
  const csv = path.join(base, 'ab.csv');
  const out = await run('ab', ['-i', '-k', '-q', '-r', '-c', String(CONNECTIONS), '-t', String(DURATION), '-n', '100000000', '-e', csv, url]);
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

async function smallValueRound(s) {
  const vol0 = { generator: 'wrk', serverPids: s.vol0Workers };
  // Ceilings first. PUT writes a pool of new files, DELETE deletes each of them once.
  await measure('nginx PUT (one volume, new files)', vol0, () => wrk(s.volume.url, { method: 'PUT', prefix: '/ceiling/write/k', keys: NGINX_WRITE_KEYS, once: true }));
  await measure('nginx DELETE (each file once)', vol0, () => wrk(s.volume.url, { method: 'DELETE', prefix: '/ceiling/write/k', keys: NGINX_WRITE_KEYS, once: true }));
  await measure('nginx GET of the file', vol0, () => wrk(s.volume.url, { prefix: '/ceiling/k' }));
  await measure('nginx HEAD of the file', { generator: 'ab', serverPids: s.vol0Workers }, () => abHead(`${s.volume.url}/ceiling/k0`));
  await measure('nginx return 302', { generator: 'wrk', serverPids: s.nginx302Workers }, () => wrk(s.nginx302.url, { prefix: '/bench/k' }));
  await measure('nginx 302 + GET of the file', { generator: 'curl', serverPids: [...s.nginx302Workers, ...s.vol0Workers] }, () =>
    curlEach(`${s.nginx302.url}/ceiling/k[0-${KEYS - 1}]`, KEYS),
  );
  await measure('Fastify constant 302', { generator: 'wrk', serverPids: [s.fastify.pid] }, () => wrk(s.fastify.url, { prefix: '/bench/k' }));
  const floor = { generator: 'wrk', serverPids: [s.floor.pid] };
  await measure('floor PUT (two volumes, new keys)', floor, () => wrk(s.floor.url, { method: 'PUT', prefix: '/write/k', keys: FLOOR_WRITE_KEYS, once: true }));
  await measure('floor DELETE (two volumes)', floor, () => wrk(s.floor.url, { method: 'DELETE', prefix: '/write/k', keys: FLOOR_WRITE_KEYS, once: true }));
  await measure('floor GET (SQLite read + 302)', floor, () => wrk(s.floor.url, { prefix: '/bench/k' }));

  const mkv = { generator: 'wrk', serverPids: [s.mkv.pid] };
  await measure('mkv PUT (R=2, new keys)', mkv, () => wrk(s.mkv.url, { method: 'PUT', prefix: '/write/k', keys: MKV_WRITE_KEYS, once: true }));
  await measure('mkv DELETE (each key once)', mkv, () => wrk(s.mkv.url, { method: 'DELETE', prefix: '/write/k', keys: MKV_WRITE_KEYS, once: true }));
  await measure('mkv GET (302)', mkv, () => wrk(s.mkv.url, { prefix: '/bench/k' }));
  // Right after the small index's run, so the two see the same machine load.
  await measure(`mkv GET (302), ${INDEX_KEYS} keys in the index`, { generator: 'wrk', serverPids: [s.mkvBig.pid] }, () => wrk(s.mkvBig.url, { prefix: '/bench/k' }));
  await measure('mkv HEAD', { generator: 'ab', serverPids: [s.mkv.pid] }, () => abHead(`${s.mkv.url}/bench/k0`));
  await measure('mkv GETFULL (302 + GET of the file)', { generator: 'curl', serverPids: [s.mkv.pid] }, () => curlEach(`${s.mkv.url}/bench/k[0-${KEYS - 1}]`, KEYS));
}

/** PUT and GETFULL of one large value; mkv's RSS is sampled while it serves them. */
async function largeValueRound(s, file, rss) {
  const large = `${LARGE_MIB} MiB`;
  const vol0 = { generator: 'curl', unit: 'MB/s', serverPids: s.vol0Workers };
  const mkv = { generator: 'curl', unit: 'MB/s', serverPids: [s.mkv.pid] };
  const sampled = async (work) => {
    const { result, peak } = await withPeakRss(s.mkv.pid, work);
    rss.peak = Math.max(rss.peak, peak);
    return result;
  };
  await measure(`nginx PUT ${large} (one volume)`, vol0, () => curlLarge(`${s.volume.url}/ceiling/large`, file));
  await measure(`mkv PUT ${large} (R=2)`, mkv, () => sampled(() => curlLarge(`${s.mkv.url}/large/v`, file)));
  await measure(`floor PUT ${large} (two volumes, no digest)`, { ...mkv, serverPids: [s.floor.pid] }, () => curlLarge(`${s.floor.url}/large/v`, file));
  await measure(`nginx GET ${large}`, vol0, () => curlLarge(`${s.volume.url}/ceiling/large`));
  await measure(`mkv GETFULL ${large}`, mkv, () => sampled(() => curlLarge(`${s.mkv.url}/large/v`)));
}

function writeLargeFile() {
  const file = path.join(base, 'large.bin');
  const chunk = Buffer.alloc(MiB);
  const fd = fs.openSync(file, 'w');
  for (let i = 0; i < LARGE_MIB; i++) fs.writeSync(fd, chunk.fill(i & 0xff));
  fs.closeSync(fd);
  return file;
}

async function main() {
  ensureTools();
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
  // V8 compiles the servers' hot paths in their first second of load: not in round 1's figures.
  for (const server of [s.mkv, s.mkvBig, s.fastify, s.floor]) await wrk(server.url, { prefix: '/bench/k', seconds: 1 });

  for (let round = 1; round <= ROUNDS; round++) {
    process.stderr.write(`1 KiB round ${round}/${ROUNDS}\n`);
    await smallValueRound(s);
  }
  const file = writeLargeFile();
  const rss = { baseline: rssBytes(s.mkv.pid), peak: 0 };
  for (let round = 1; round <= ROUNDS; round++) {
    process.stderr.write(`${LARGE_MIB} MiB round ${round}/${ROUNDS}\n`);
    await largeValueRound(s, file, rss);
  }
  printReport(rss);
}

// ---- the report -----------------------------------------------------------

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x, digits = 0) => (x === undefined || Number.isNaN(x) ? '' : x.toFixed(digits));
const figure = (name, field = 'rate') => median(results.get(name).runs.map((r) => r[field]));

function printReport(rss) {
  const cpu = os.cpus();
  console.log(
    `\nmachine: ${cpu.length} cores (${cpu[0].model}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, load ${os.loadavg()[0].toFixed(1)}; node ${process.version}; ` +
      `${CONNECTIONS} connections (wrk -t${THREADS}, ab -c, curl --parallel-max), ${DURATION} s timed phases, ${KEYS} keys, 1 KiB values; ${ROUNDS} rounds; volumes on ${base.startsWith('/dev/shm') ? 'tmpfs' : 'disk'}\n`,
  );
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
      "Server CPU: user+system time of mkv, of the Fastify server, or of the nginx workers serving the phase (the volume's, plus the 302",
      "server's for its GETFULL), per answered request; mkv's leaves out its volumes'. Generator CPU: wrk's, ab's or curl's, on the same 2 cores.",
      `The ${LARGE_MIB} MiB rows are one transfer a round: no percentiles, CPU per transfer.`,
    ].join('\n'),
  );

  const large = `${LARGE_MIB} MiB`;
  const rows = [
    ['GET (302) rate', figure('mkv GET (302)'), 'Fastify constant 302', figure('Fastify constant 302'), '>= 0.80x', (r) => r >= 0.8],
    ['GET (302) rate', figure('mkv GET (302)'), 'nginx return 302', figure('nginx return 302'), '', null],
    ['GET (302) CPU µs/req', figure('mkv GET (302)', 'cpuUs'), 'Fastify constant 302', figure('Fastify constant 302', 'cpuUs'), '<= 25 µs', (_r, v) => v <= 25],
    ['GETFULL rate', figure('mkv GETFULL (302 + GET of the file)'), 'nginx 302 + GET of the file', figure('nginx 302 + GET of the file'), '>= 0.70x', (r) => r >= 0.7],
    ['HEAD rate', figure('mkv HEAD'), 'nginx HEAD of the file', figure('nginx HEAD of the file'), '', null],
    ['PUT rate', figure('mkv PUT (R=2, new keys)'), 'nginx PUT (one volume, new files)', figure('nginx PUT (one volume, new files)'), '>= 0.25x', (r) => r >= 0.25],
    ['PUT CPU µs/req', figure('mkv PUT (R=2, new keys)', 'cpuUs'), '', undefined, '<= 130 µs', (_r, v) => v <= 130],
    ['DELETE rate', figure('mkv DELETE (each key once)'), 'nginx DELETE (each file once)', figure('nginx DELETE (each file once)'), '', null],
    ['DELETE CPU µs/req', figure('mkv DELETE (each key once)', 'cpuUs'), '', undefined, '<= 90 µs', (_r, v) => v <= 90],
    [`PUT ${large} MB/s`, figure(`mkv PUT ${large} (R=2)`), `nginx PUT ${large} (one volume)`, figure(`nginx PUT ${large} (one volume)`), '>= 0.80x', (r) => r >= 0.8],
    [`GETFULL ${large} MB/s`, figure(`mkv GETFULL ${large}`), `nginx GET ${large}`, figure(`nginx GET ${large}`), 'bounded by nginx', null],
    [
      `RSS growth during the ${large} phases, MiB`,
      (rss.peak - rss.baseline) / MiB,
      `baseline ${fmt(rss.baseline / MiB)} MiB, peak ${fmt(rss.peak / MiB)} MiB`,
      undefined,
      '< 64 MiB',
      (_r, v) => v < 64,
    ],
    [`GET (302) rate, ${INDEX_KEYS} keys`, figure(`mkv GET (302), ${INDEX_KEYS} keys in the index`), `the same, ${KEYS} keys`, figure('mkv GET (302)'), '>= 0.90x', (r) => r >= 0.9],
    [
      `GET (302) p99 ms, ${INDEX_KEYS} keys`,
      figure(`mkv GET (302), ${INDEX_KEYS} keys in the index`, 'p99'),
      `the same, ${KEYS} keys`,
      figure('mkv GET (302)', 'p99'),
      '<= 1.10x',
      (r) => r <= 1.1,
    ],
  ];
  console.log('\n| mkv figure | mkv | against | its value | ratio | target | met |');
  console.log('|---|---:|---|---:|---:|---|---|');
  for (const [what, value, against, ceiling, target, met] of rows) {
    const ratio = ceiling === undefined ? undefined : value / ceiling;
    const verdict = met ? (met(ratio, value) ? 'yes' : 'no') : '';
    console.log(`| ${what} | ${fmt(value, value < 10 ? 2 : 0)} | ${against} | ${fmt(ceiling, ceiling < 10 ? 2 : 0)} | ${fmt(ratio, 2)} | ${target} | ${verdict} |`);
  }

  // The same targets put to the floor server: what the runtime costs before mkv adds anything.
  const ratioTo = (name, ceiling, field) => figure(name, field) / figure(ceiling, field);
  const nginxPut = 'nginx PUT (one volume, new files)';
  const floorRows = [
    ['GET (302) rate / Fastify constant 302', '>= 0.80', ratioTo('floor GET (SQLite read + 302)', 'Fastify constant 302'), ratioTo('mkv GET (302)', 'Fastify constant 302'), (v) => v >= 0.8],
    ['GET (302) CPU µs/req', '<= 25', figure('floor GET (SQLite read + 302)', 'cpuUs'), figure('mkv GET (302)', 'cpuUs'), (v) => v <= 25],
    ['PUT rate / nginx PUT', '>= 0.25', ratioTo('floor PUT (two volumes, new keys)', nginxPut), ratioTo('mkv PUT (R=2, new keys)', nginxPut), (v) => v >= 0.25],
    ['PUT CPU µs/req', '<= 130', figure('floor PUT (two volumes, new keys)', 'cpuUs'), figure('mkv PUT (R=2, new keys)', 'cpuUs'), (v) => v <= 130],
    ['DELETE CPU µs/req', '<= 90', figure('floor DELETE (two volumes)', 'cpuUs'), figure('mkv DELETE (each key once)', 'cpuUs'), (v) => v <= 90],
    [
      `PUT ${large} MB/s / nginx PUT`,
      '>= 0.80',
      ratioTo(`floor PUT ${large} (two volumes, no digest)`, `nginx PUT ${large} (one volume)`),
      ratioTo(`mkv PUT ${large} (R=2)`, `nginx PUT ${large} (one volume)`),
      (v) => v >= 0.8,
    ],
  ];
  console.log('\nThe floor: bench/floor-server.js, bare Fastify doing only what each operation cannot go without (see its header).');
  console.log('| figure | target | floor | floor meets it | mkv |');
  console.log('|---|---|---:|---|---:|');
  for (const [what, target, floorValue, mkvValue, met] of floorRows) {
    const digits = floorValue < 10 ? 2 : 1; // a floor right at a target must not round onto it
    console.log(`| ${what} | ${target} | ${fmt(floorValue, digits)} | ${met(floorValue) ? 'yes' : 'no'} | ${fmt(mkvValue, digits)} |`);
  }
}

// ---- stopping -------------------------------------------------------------

/** Stops every process this run started, by its PID, and waits until each is gone. */
async function cleanUp() {
  const pids = started
    .map((p) => {
      if (p.pid !== undefined) return p.exitCode === null ? p.pid : undefined;
      try {
        return Number(fs.readFileSync(p.pidFile, 'utf8'));
      } catch {
        return undefined; // never started
      }
    })
    .filter((pid) => pid !== undefined);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {}
  }
  for (let i = 0; i < 100 && pids.some(alive); i++) await sleep(50);
  if (base) fs.rmSync(base, { recursive: true, force: true });
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
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
