#!/usr/bin/env bash
# A throwaway RabbitMQ for the amqp:// broker's tests.
#
#   eval "$(scripts/services/rabbitmq.sh start)"   # prints export lines
#   scripts/services/rabbitmq.sh stop "$SLUICE_RABBITMQ_DIR"
#
# start installs Debian's rabbitmq-server when it is missing, then runs a
# node as the unprivileged `rabbitmq` user, on loopback only, with free
# ports (AMQP, Erlang distribution, its own epmd) and everything (database,
# logs, config, cookie) in a temporary folder, so it touches no system
# RabbitMQ. It waits until the node accepts connections and prints
#   export SLUICE_TEST_AMQP=amqp://guest:guest@127.0.0.1:PORT/
#   export SLUICE_RABBITMQ_DIR=/tmp/...
# stop stops that node and its epmd and removes the folder.
set -euo pipefail

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

node_env() { # the environment every rabbitmq command of the node needs
  local dir=$1
  # shellcheck disable=SC1091
  . "$dir/ports"
  echo HOME="$dir/home" RABBITMQ_NODENAME="$NODENAME" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_DIST_PORT="$DIST_PORT" \
    ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
}

as_rabbitmq() { # dir cmd args...
  local dir=$1; shift
  # shellcheck disable=SC2046
  runuser -u rabbitmq -- env $(node_env "$dir") "$@"
}

start() {
  if [ "$(id -u)" != 0 ]; then
    echo "rabbitmq.sh needs root: it installs rabbitmq-server when missing and runs the node as the rabbitmq user" >&2
    exit 1
  fi
  if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    echo "== installing rabbitmq-server (Debian)" >&2
    # Keep the package's own service from starting: this script runs one.
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends rabbitmq-server >&2
  fi
  local dir
  dir=$(mktemp -d /tmp/sluice-rabbitmq.XXXXXX)
  mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  cat > "$dir/ports" <<PORTS
NODENAME=sluice-$(basename "$dir" | tr -dc 'a-zA-Z0-9')@localhost
AMQP_PORT=$(free_port)
DIST_PORT=$(free_port)
EPMD_PORT=$(free_port)
PORTS
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/home/.erlang.cookie"
  chmod 400 "$dir/home/.erlang.cookie"
  printf 'listeners.tcp.1 = 127.0.0.1:%s\nloopback_users.guest = true\nlog.console = false\nlog.file.level = warning\n' \
    "$(. "$dir/ports"; echo "$AMQP_PORT")" > "$dir/rabbitmq.conf"
  echo '[].' > "$dir/enabled_plugins"
  echo '[].' > "$dir/advanced.config"
  : > "$dir/rabbitmq-env.conf"
  chown -R rabbitmq:rabbitmq "$dir"
  chmod 700 "$dir"
  # Started straight from this shell (no subshell or function left
  # running), with every descriptor redirected: a caller reading this
  # script's output through a pipe ($(...)) must see it close.
  local envs
  envs=$(node_env "$dir")
  # shellcheck disable=SC2086
  (cd "$dir" && exec setsid runuser -u rabbitmq -- env $envs /usr/lib/rabbitmq/bin/rabbitmq-server \
    > "$dir/log/server.out" 2>&1 < /dev/null) &
  # await_startup fails at once while the node has not registered with
  # its epmd yet: first wait (up to 90 s) for the node to answer at all.
  local up=0
  for _ in $(seq 180); do
    if as_rabbitmq "$dir" /usr/lib/rabbitmq/bin/rabbitmqctl -q ping > /dev/null 2>&1; then up=1; break; fi
    sleep 0.5
  done
  if [ "$up" != 1 ] || ! as_rabbitmq "$dir" timeout 60 /usr/lib/rabbitmq/bin/rabbitmqctl --timeout 60 await_startup > "$dir/log/await.out" 2>&1; then
    echo "rabbitmq did not start; see $dir/log" >&2
    cat "$dir/log/server.out" "$dir/log/await.out" >&2 || true
    stop "$dir"
    exit 1
  fi
  # shellcheck disable=SC1091
  . "$dir/ports"
  echo "export SLUICE_TEST_AMQP=amqp://guest:guest@127.0.0.1:$AMQP_PORT/"
  echo "export SLUICE_RABBITMQ_DIR=$dir"
}

stop() {
  local dir=${1:-}
  [ -n "$dir" ] && [ -f "$dir/ports" ] || { echo "usage: $0 stop DIR (SLUICE_RABBITMQ_DIR)" >&2; exit 2; }
  as_rabbitmq "$dir" timeout 30 /usr/lib/rabbitmq/bin/rabbitmqctl stop "$dir/rabbitmq.pid" >/dev/null 2>&1 || {
    [ -f "$dir/rabbitmq.pid" ] && kill "$(cat "$dir/rabbitmq.pid")" 2>/dev/null || true
  }
  # shellcheck disable=SC1091
  . "$dir/ports"
  runuser -u rabbitmq -- env ERL_EPMD_PORT="$EPMD_PORT" epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
