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
  # No fallback: `npm install` resolves the same lock and fails the same way,
  # and a lock this npm refuses must be rewritten (`npm install` with the
  # machine's own npm), not worked around.
  if ! npm ci --no-audit --no-fund --loglevel=error; then
    echo "setup: npm ci (npm $(npm --version)) failed; if it refused package-lock.json, regenerate it with this npm: npm install --package-lock-only" >&2
    exit 1
  fi
fi

npm run --silent build
