#!/usr/bin/env bash
# A working local cluster: 3 nginx volumes and `mkv serve` (R=2) on an SQLite
# file, all under ./data. Ctrl-C stops everything.
#   MKV_PORT (3000) and MKV_VOLUME_PORTS ("8081 8082 8083") move the ports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

port=${MKV_PORT:-3000}
read -r -a volume_ports <<< "${MKV_VOLUME_PORTS:-8081 8082 8083}"
mkdir -p data/volumes
volumes=$(bash nginx/start-volumes.sh data/volumes "${volume_ports[@]}" | paste -sd, -)

stop_volumes() {
  for p in "${volume_ports[@]}"; do
    [ -f "data/volumes/vol-$p/nginx.pid" ] && kill "$(cat "data/volumes/vol-$p/nginx.pid")" 2>/dev/null || true
  done
}
trap stop_volumes EXIT

cat <<USAGE
volumes: $volumes (data under ./data/volumes)
index:   ./data/index.db
Try it:
  curl -i -X PUT --data-binary @README.md http://localhost:$port/docs/readme.md
  curl -i http://localhost:$port/docs/readme.md          # 302 to a volume
  curl -L http://localhost:$port/docs/readme.md          # the value
  curl -I http://localhost:$port/docs/readme.md          # size and MD5
  curl "http://localhost:$port/?prefix=docs/"            # list
  curl -X DELETE http://localhost:$port/docs/readme.md
Ctrl-C stops the server and the volumes.
USAGE

bin/mkv -d data/index.db -v "$volumes" -r 2 serve -p "$port" --host 127.0.0.1
