#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the session-store tests (tests/agent/test_session_stores.py):
#
#   pg_env=$(bash scripts/postgres_test_server.sh start) && eval "$pg_env"
#   # -> AISLE_TEST_POSTGRES_URL=postgresql://aisle:aisle@127.0.0.1:PORT/aisle_test, AISLE_TEST_PG_DIR=/tmp/aisle-pg.XXXX
#   bash scripts/postgres_test_server.sh stop "$AISLE_TEST_PG_DIR"
#
# `start` installs Debian's postgresql when it is missing (as root, with apt-get), makes a cluster
# in a temporary folder (as the `postgres` user when run as root: the server refuses to run as
# root), listens on a free port of 127.0.0.1 only with a password, and runs without fsync: its
# data is thrown away. The `export` line is the only thing it prints on stdout. `stop` ends the
# server and deletes the folder.
set -euo pipefail

log() { echo "postgres_test_server: $*" >&2; }

pg_bindir() {
  local dir
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

start() {
  local bindir dir port
  if ! bindir=$(pg_bindir); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing Debian's postgresql"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
      bindir=$(pg_bindir) || { log "postgresql is installed, but initdb is not found"; exit 1; }
    else
      log "PostgreSQL is not installed (no initdb); install it (Debian: sudo apt-get install postgresql) and run again"
      exit 1
    fi
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/aisle-pg.XXXXXX")
  echo aisle > "$dir/password"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || { log "there is no 'postgres' user to run the server as"; exit 1; }
    chown -R postgres: "$dir"
  fi
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if ! as_owner "$bindir/initdb" -D "$dir/data" -U aisle --pwfile="$dir/password" --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    exit 1
  fi
  if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >&2; then
    cat "$dir/server.log" >&2
    exit 1
  fi
  as_owner "$bindir/createdb" -h "$dir" -p "$port" -U aisle aisle_test >&2
  log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
  echo "export AISLE_TEST_POSTGRES_URL=postgresql://aisle:aisle@127.0.0.1:$port/aisle_test AISLE_TEST_PG_DIR=$dir"
}

stop() {
  local dir=${1:-${AISLE_TEST_PG_DIR:-}} bindir
  if [ -z "$dir" ] || [ ! -d "$dir/data" ]; then
    log "no test server to stop"
    return 0
  fi
  bindir=$(pg_bindir)
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start | stop [DIR]" >&2; exit 2 ;;
esac
