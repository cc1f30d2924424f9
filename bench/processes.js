/**
 * What the bench scripts share about the servers they start: a free port for
 * each, and stopping them all (`started` holds child processes, or
 * { pidFile } for the nginx daemons).
 */
const fs = require('node:fs');
const net = require('node:net');

const freePort = () =>
  new Promise((done) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops every process in `started` that still runs, by its PID (SIGTERM), and waits up to 5 s until each is gone. */
async function stopStarted(started) {
  const pids = started
    .map((p) => {
      if (p.pid !== undefined) return p.exitCode === null && p.signalCode === null ? p.pid : undefined;
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
}

module.exports = { freePort, sleep, stopStarted };
