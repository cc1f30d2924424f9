#!/usr/bin/env node
/**
 * Rebuild and rebalance at scale, with the CLI process's peak RSS.
 *
 *   npm run build && node bench/jobs-scale.js [keys=100000] [dir]
 *
 * Starts 3 nginx volumes (on /dev/shm when it exists, so the disk does not
 * dominate), writes `keys` small blobs straight into the volumes' directories
 * where placement puts them (R=2), then runs, as an operator would:
 *   mkv rebuild                       (index from the volumes, 3 volumes)
 *   mkv rebalance --dry-run           (after adding a 4th volume)
 *   mkv rebalance                     (moves about half the keys)
 *   mkv serve + POST /_admin/rebalance (back to 3 volumes, in the server)
 * and prints each one's wall time, keys per second and peak RSS.
 */
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { placeKey, blobUrl } = require('../dist/hashing/rendezvous');

const KEYS = Number(process.argv[2] ?? 100_000);
const base = process.argv[3] ?? fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'mkv-scale-'));
const ROOT = path.resolve(__dirname, '..');
const PORTS = [18581, 18582, 18583, 18584];
const urls = PORTS.map((p) => `http://127.0.0.1:${p}`);
const volumeDir = (port) => path.join(base, 'volumes', `vol-${port}`, 'data');

function startVolumes(ports) {
  execFileSync('bash', [path.join(ROOT, 'nginx/start-volumes.sh'), path.join(base, 'volumes'), ...ports.map(String)], { stdio: 'ignore' });
}

function stopVolumes() {
  for (const port of PORTS) {
    const pidFile = path.join(base, 'volumes', `vol-${port}`, 'nginx.pid');
    if (fs.existsSync(pidFile)) try { process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGTERM'); } catch {}
  }
}

/** Runs the CLI, sampling its VmHWM (peak RSS) from /proc until it exits. */
function mkv(args) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(path.join(ROOT, 'bin/mkv'), ['-d', path.join(base, 'index.db'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let peak = 0;
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', () => undefined);
    const sample = setInterval(() => {
      try {
        const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
        peak = Math.max(peak, Number(/^VmHWM:\s+(\d+)/m.exec(status)[1]) * 1024);
      } catch {}
    }, 50);
    child.on('exit', (code) => {
      clearInterval(sample);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code !== 0) reject(new Error(`mkv ${args.join(' ')} exited ${code}: ${out}`));
      else resolve({ seconds, peak, summary: out.trim().split('\n')[0] });
    });
  });
}

/** `mkv serve`, then POST /_admin/rebalance and poll the job, sampling the server's peak RSS. */
async function serveAndRebalance(volumes) {
  const port = 18590;
  const child = spawn(path.join(ROOT, 'bin/mkv'), ['-d', path.join(base, 'index.db'), '-v', volumes.join(','), '-r', '2', '--log-level', 'warn', 'serve', '-p', String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${url}/_admin/health`).then((r) => r.ok, () => false)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  let peak = 0;
  const sample = setInterval(() => {
    try {
      peak = Math.max(peak, Number(/^VmHWM:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) * 1024);
    } catch {}
  }, 50);
  const started = process.hrtime.bigint();
  const job = await (await fetch(`${url}/_admin/rebalance`, { method: 'POST' })).json();
  let view;
  do {
    await new Promise((r) => setTimeout(r, 200));
    view = await (await fetch(`${url}/_admin/jobs/${job.id}`)).json();
  } while (!['succeeded', 'failed', 'cancelled'].includes(view.state));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  clearInterval(sample);
  child.kill('SIGTERM');
  const c = view.counters;
  return { seconds, peak, summary: `rebalance ${view.state}: ${c.scanned} scanned, ${c.moved} moved, ${c.skipped} skipped, ${c.failed} failed` };
}

async function main() {
  startVolumes(PORTS.slice(0, 3));
  const three = urls.slice(0, 3);
  const value = Buffer.alloc(64, 'v');
  const t0 = Date.now();
  const made = new Set();
  for (let i = 0; i < KEYS; i++) {
    const key = `scale/d${i % 100}/key-${i}`;
    for (const volume of placeKey(key, three, 2)) {
      const port = Number(new URL(volume).port);
      const file = path.join(volumeDir(port), decodeURIComponent(new URL(blobUrl(key, volume, 1)).pathname));
      if (!made.has(path.dirname(file))) fs.mkdirSync(path.dirname(file), { recursive: true }), made.add(path.dirname(file));
      fs.writeFileSync(file, value);
    }
  }
  console.log(`wrote ${KEYS} keys x 2 replicas into ${base} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const rows = [];
  const rebuild = await mkv(['-v', three.join(','), '-r', '2', 'rebuild']);
  rows.push(['rebuild (3 volumes)', KEYS, rebuild]);
  startVolumes([PORTS[3]]);
  const dry = await mkv(['-v', urls.join(','), '-r', '2', 'rebalance', '--dry-run']);
  rows.push(['rebalance --dry-run (+1 volume)', KEYS, dry]);
  const real = await mkv(['-v', urls.join(','), '-r', '2', 'rebalance']);
  rows.push(['rebalance (+1 volume)', KEYS, real]);

  // The same job through the admin API, in a serving process: back to 3 volumes.
  const served = await serveAndRebalance(three);
  rows.push(['rebalance via the admin API (-1 volume)', KEYS, served]);

  console.log(`\n| job | keys | wall s | keys/s | peak RSS MiB |\n|---|---:|---:|---:|---:|`);
  for (const [name, keys, r] of rows) {
    console.log(`| ${name} | ${keys} | ${r.seconds.toFixed(1)} | ${Math.round(keys / r.seconds)} | ${(r.peak / 2 ** 20).toFixed(0)} |`);
  }
  for (const [name, , r] of rows) console.log(`${name}: ${r.summary}`);
}

main()
  .catch((error) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => {
    stopVolumes();
    if (!process.argv[3] && !process.env.KEEP) fs.rmSync(base, { recursive: true, force: true });
  });
