#!/usr/bin/env bash
# Start one nginx WebDAV volume per port, each in <base-dir>/vol-<port>.
#   nginx/start-volumes.sh <base-dir> <port> [<port> ...]
# Prints the volume URLs, one per line. Stop one with
#   kill "$(cat <base-dir>/vol-<port>/nginx.pid)"
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 <base-dir> <port> [<port> ...]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
base=$1; shift
nginx_bin=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
user_directive=""
[ "$(id -u)" = 0 ] && user_directive="user root;"
listen_host=${VOLUME_HOST:-127.0.0.1}

for port in "$@"; do
  dir=$(mkdir -p "$base/vol-$port" && cd "$base/vol-$port" && pwd)
  mkdir -p "$dir/data/.nginx-body"
  sed -e "s|@@DIR@@|$dir|g" -e "s|@@LISTEN@@|$listen_host:$port|g" \
      -e "s|@@USER_DIRECTIVE@@|$user_directive|g" \
      "$here/volume.conf.template" > "$dir/nginx.conf"
  "$nginx_bin" -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
  echo "http://$listen_host:$port"
done
