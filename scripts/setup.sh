#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks and builds; cheap when nothing changed.
# Called by `npm start` and `npm test` (and so by .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "setup: installing nginx from Debian's packages" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  # policy-rc.d 101: the package must not start a system nginx on port 80;
  # mkv starts its own volume servers.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light >/dev/null
  $sudo rm -f /usr/sbin/policy-rc.d
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  # npm 11.16+ can reject a lock whose optional platform packages it omitted
  # itself (npm/cli#9846); the lock is written with npm 11.13 to avoid that,
  # and `npm install` (same pinned versions) is the fallback.
  npm ci --no-audit --no-fund --loglevel=error ||
    { echo "setup: npm ci refused the lock; falling back to npm install" >&2; npm install --no-audit --no-fund --loglevel=error; }
fi

npm run --silent build
