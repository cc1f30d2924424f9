#!/usr/bin/env node
/**
 * mkv against the machine's own ceilings, in one run.
 *
 *   npm run build && npm run bench            (ROUNDS=3 DURATION=3 KEYS=10000 by default)
 *
 * Starts 3 nginx volumes on tmpfs (/dev/shm), `mkv serve` with R=2 on a fresh
 * index, a bare Fastify server answering a constant 302 and an nginx `return
 * 302` server; drives each with wrk (2 threads, 100 connections, 1 KiB
 * values, 10,000 keys) and reads the mkv server's CPU time from /proc.
 * Not yet here (issue 5): HEAD (wrk cannot), GETFULL (wrk does not follow
 * redirects) and the 256 MiB phases.
 * Every phase runs ROUNDS times; the table gives medians (min-max).
 * Every process it starts is stopped by its PID at the end.
 */
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { request, Agent } = require('undici');

const ROOT = path.resolve(__dirname, '..');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const DURATION = Number(process.env.DURATION ?? 3);
const KEYS = Number(process.env.KEYS ?? 10000);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 100);
const THREADS = 2;
const DELETE_KEYS = Number(process.env.DELETE_KEYS ?? 40000);
const base = fs.mkdtempSync(path.join(process.env.BENCH_DIR ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()), 'mkv-bench-'));
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const children = [];
const nginxPidFiles = [];

const freePort = () =>
  new Promise((done) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });

async function waitFor(url) {
  for (let i = 0; i < 100; i++) {
    if (await fetch(url, { redirect: 'manual' }).then(() => true, () => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} never answered`);
}

function cpuTicks(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

function wrk(url, method, prefix, extraEnv = {}) {
  const out = execFileSync(
    'wrk',
    [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${DURATION}s`, '--timeout', '10s', '-s', path.join(__dirname, 'wrk-keys.lua'), url],
    { env: { ...process.env, METHOD: method, KEY_PREFIX: prefix, KEYS: String(KEYS), THREADS: String(THREADS), ...extraEnv }, maxBuffer: 1 << 20 },
  ).toString();
  const line = out.split('\n').find((l) => l.startsWith('{"requests"'));
  const r = JSON.parse(line);
  return { rate: r.requests / (r.duration_us / 1e6), requests: r.requests, p50: r.p50_us, p99: r.p99_us, errors: r.socket_errors, badStatus: r.bad_status };
}

/** Writes the keys with 50 requests in flight (the fill between phases, not measured). */
async function fill(url, prefix, keys = KEYS) {
  const agent = new Agent({ connections: 50 });
  const body = Buffer.alloc(1024, 'x');
  let next = 0;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (next < keys) {
        const res = await request(`${url}${prefix}${next++}`, { method: 'PUT', body, dispatcher: agent });
        await res.body.dump();
      }
    }),
  );
  await agent.close();
}

async function main() {
  const volumePorts = [await freePort(), await freePort(), await freePort()];
  execFileSync('bash', [path.join(ROOT, 'nginx/start-volumes.sh'), path.join(base, 'volumes'), ...volumePorts.map(String)], { stdio: 'ignore' });
  for (const port of volumePorts) nginxPidFiles.push(path.join(base, 'volumes', `vol-${port}`, 'nginx.pid'));
  const volumes = volumePorts.map((p) => `http://127.0.0.1:${p}`);

  const mkvPort = await freePort();
  const mkv = spawn(path.join(ROOT, 'bin/mkv'), ['-d', path.join(base, 'index.db'), '-v', volumes.join(','), '-r', '2', '--log-level', 'warn', 'serve', '-p', String(mkvPort)], { stdio: 'ignore' });
  children.push(mkv);
  const mkvUrl = `http://127.0.0.1:${mkvPort}`;

  const fastifyPort = await freePort();
  const fastify302 = spawn(process.execPath, [path.join(__dirname, 'fastify-302.js'), String(fastifyPort)], { stdio: 'ignore' });
  children.push(fastify302);
  const fastifyUrl = `http://127.0.0.1:${fastifyPort}`;

  const nginxPort = await freePort();
  const nginxDir = path.join(base, 'nginx-302');
  fs.mkdirSync(nginxDir, { recursive: true });
  fs.writeFileSync(
    path.join(nginxDir, 'nginx.conf'),
    fs.readFileSync(path.join(__dirname, 'nginx-302.conf.template'), 'utf8').replaceAll('@@DIR@@', nginxDir).replaceAll('@@PORT@@', String(nginxPort)),
  );
  execFileSync(fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx', ['-q', '-p', nginxDir, '-c', path.join(nginxDir, 'nginx.conf'), '-e', path.join(nginxDir, 'error.log')]);
  nginxPidFiles.push(path.join(nginxDir, 'nginx.pid'));
  const nginxUrl = `http://127.0.0.1:${nginxPort}`;

  await Promise.all([waitFor(`${mkvUrl}/_admin/health`), waitFor(fastifyUrl), waitFor(nginxUrl), ...volumes.map((v) => waitFor(`${v}/`))]);

  const results = {};
  const record = (name, result) => (results[name] ??= []).push(result);
  const onMkv = (name, method, prefix = '/bench/k', keys = KEYS) => {
    const before = cpuTicks(mkv.pid);
    const r = wrk(mkvUrl, method, prefix, { KEYS: String(keys) });
    r.cpuUs = ((cpuTicks(mkv.pid) - before) / CLK_TCK / r.requests) * 1e6;
    record(name, r);
  };

  for (let round = 1; round <= ROUNDS; round++) {
    process.stderr.write(`round ${round}/${ROUNDS}\n`);
    // Ceilings, with the same generator. The DELETE ceiling deletes what the PUT wrote, once.
    record('nginx PUT (one volume)', wrk(volumes[0], 'PUT', '/ceiling/k'));
    record('nginx GET of the file', wrk(volumes[0], 'GET', '/ceiling/k'));
    record('nginx return 302', wrk(nginxUrl, 'GET', '/bench/k'));
    record('Fastify constant 302', wrk(fastifyUrl, 'GET', '/bench/k'));
    // wrk runs for a duration, and nginx deletes 10,000 files in a fraction of
    // it: most of these are 404s, so this row bounds DELETE rather than measures it.
    record('nginx DELETE (mostly 404)', wrk(volumes[0], 'DELETE', '/ceiling/k'));
    // mkv: every key exists before the reads and the deletes.
    await fill(mkvUrl, '/bench/k');
    onMkv('mkv PUT (R=2, overwrite)', 'PUT');
    onMkv('mkv GET (302)', 'GET');
    // Enough keys that a DURATION of deletes never runs out (checked: errors stay 0).
    await fill(mkvUrl, '/delete/k', DELETE_KEYS);
    onMkv('mkv DELETE', 'DELETE', '/delete/k', DELETE_KEYS);
  }

  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rate = (name) => median(results[name].map((r) => r.rate));
  console.log(`\nmachine: ${os.cpus().length} cores (${os.cpus()[0].model}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; node ${process.version}; wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION}s; ${KEYS} keys, 1 KiB values; ${ROUNDS} rounds; volumes on ${base.startsWith('/dev/shm') ? 'tmpfs' : 'disk'}\n`);
  console.log('| phase | req/s median (min-max) | p50 ms | p99 ms | mkv CPU us/req | errors |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const [name, runs] of Object.entries(results)) {
    const rates = runs.map((r) => r.rate);
    const cpu = runs[0].cpuUs === undefined ? '' : median(runs.map((r) => r.cpuUs)).toFixed(0);
    const errors = runs.reduce((n, r) => n + r.errors + r.badStatus, 0);
    console.log(
      `| ${name} | ${Math.round(median(rates))} (${Math.round(Math.min(...rates))}-${Math.round(Math.max(...rates))}) | ${(median(runs.map((r) => r.p50)) / 1000).toFixed(2)} | ${(median(runs.map((r) => r.p99)) / 1000).toFixed(2)} | ${cpu} | ${errors} |`,
    );
  }
  console.log('\n| ratio | value |\n|---|---:|');
  console.log(`| mkv GET / Fastify 302 | ${(rate('mkv GET (302)') / rate('Fastify constant 302')).toFixed(2)} |`);
  console.log(`| mkv GET / nginx 302 | ${(rate('mkv GET (302)') / rate('nginx return 302')).toFixed(2)} |`);
  console.log(`| mkv PUT / nginx PUT | ${(rate('mkv PUT (R=2, overwrite)') / rate('nginx PUT (one volume)')).toFixed(2)} |`);
  console.log(`| mkv DELETE / nginx DELETE (404s) | ${(rate('mkv DELETE') / rate('nginx DELETE (mostly 404)')).toFixed(2)} |`);
}

function cleanUp() {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  for (const pidFile of nginxPidFiles) {
    try {
      process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGTERM');
    } catch {}
  }
  setTimeout(() => fs.rmSync(base, { recursive: true, force: true }), 500);
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(cleanUp);
