#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for a cluster on one machine (the tests, the benchmark, a
# try-out): `scripts/postgres.sh start DIR` creates and starts one that listens only on
# a Unix socket in DIR, and prints its DATABASE_URL; `scripts/postgres.sh stop DIR`
# stops it and removes DIR. Runs as root (the server runs as the postgres user).
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
  start)
    [ -x "$BIN/postgres" ] || { echo "PostgreSQL 15 is missing: apt-get install postgresql-15 (or scripts/setup.sh)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_postgres "$BIN/initdb" -D "$dir/data" -A trust -U slipway --no-sync >"$dir/initdb.log" 2>&1
    # fsync off: a throwaway cluster; many connections: several nodes and their pools.
    as_postgres "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=off -c max_connections=200" \
      start >/dev/null
    as_postgres "$BIN/createdb" -h "$dir" -U slipway slipway
    echo "postgres://slipway@localhost/slipway?host=$dir"
    ;;
  stop)
    if [ -d "$dir/data" ]; then
      as_postgres "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
