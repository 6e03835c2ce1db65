#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 server for the tests and prints the
# lines to export its URL:
#
#   eval "$(scripts/services/postgres.sh start)"   # export SLUICE_TEST_POSTGRES=... and SLUICE_PG_DIR=...
#   scripts/services/postgres.sh stop "$SLUICE_PG_DIR"
#   scripts/services/postgres.sh with CMD ARGS...    # start, run CMD with the exports, stop
#
# PostgreSQL comes from apt when missing (Debian bookworm ships 15). initdb
# refuses root, so the cluster lives in a temporary folder owned by the
# unprivileged `postgres` user, listening on loopback only, on a free port,
# with fsync kept on (the tests measure durable commits). Progress goes to
# stderr; only export lines go to stdout.
set -euo pipefail

cmd=${1:-start}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)

run_as() { # run_as USER CMD...: as USER when root, else as ourselves
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$1" -- "${@:2}"
  else
    "${@:2}"
  fi
}

case "$cmd" in
start)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "== installing PostgreSQL from apt" >&2
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
    else
      (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
    fi
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  fi
  user=$(id -un)
  [ "$(id -u)" = 0 ] && user=postgres
  dir=$(mktemp -d /tmp/sluice-pg.XXXXXX)
  chown "$user" "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000)))
  run_as "$user" "$bin/initdb" -D "$dir/data" -U sluice --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  run_as "$user" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200 -c shared_buffers=64MB" \
    start >&2 || { cat "$dir/server.log" >&2; exit 1; }
  run_as "$user" "$bin/createdb" -h 127.0.0.1 -p "$port" -U sluice sluice >&2
  echo "== PostgreSQL on 127.0.0.1:$port (data in $dir)" >&2
  echo "export SLUICE_TEST_POSTGRES='postgres://sluice@127.0.0.1:$port/sluice?sslmode=disable'"
  echo "export SLUICE_PG_DIR='$dir'"
  ;;
with)
  shift
  pgenv="$("$0" start)"
  eval "$pgenv"
  trap '"$0" stop "$SLUICE_PG_DIR"' EXIT
  "$@"
  ;;
stop)
  dir=${2:-${SLUICE_PG_DIR:-}}
  [ -n "$dir" ] && [ -d "$dir/data" ] || { echo "postgres.sh stop: no cluster folder given" >&2; exit 1; }
  user=$(stat -c %U "$dir")
  run_as "$user" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start | stop DIR | with CMD..." >&2
  exit 2
  ;;
esac
