#!/usr/bin/env bash
# A headless browser for the dashboard's browser test (web/e2e_test.go).
#
#   eval "$(scripts/services/chromium.sh start)"   # prints export lines
#
# start installs Debian's chromium with apt when it is missing (Playwright's
# own browser download cannot work here) and playwright-core from npm into
# .cache/playwright (once; pinned), then prints
#   export SLUICE_CHROMIUM=/usr/bin/chromium
#   export SLUICE_PLAYWRIGHT=<folder holding node_modules/playwright-core>
# Nothing keeps running: each test launches its own browser, so stop has
# nothing to do.
set -euo pipefail
cd "$(dirname "$0")/../.."

PLAYWRIGHT_VERSION=1.65.1

start() {
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "chromium.sh: chromium is missing and installing it needs root (apt-get install chromium)" >&2
      exit 1
    fi
    echo "== installing chromium (Debian)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq chromium >&2
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "chromium.sh: node and npm are needed (apt-get install nodejs npm)" >&2
    exit 1
  fi
  local dir=.cache/playwright
  if [ "$(cat "$dir/version" 2>/dev/null)" != "$PLAYWRIGHT_VERSION" ]; then
    echo "== installing playwright-core@$PLAYWRIGHT_VERSION into $dir (once)" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" >&2
    echo "$PLAYWRIGHT_VERSION" > "$dir/version"
  fi
  echo "export SLUICE_CHROMIUM=$(command -v chromium)"
  echo "export SLUICE_PLAYWRIGHT=$PWD/$dir"
}

case "${1:-}" in
  start) start ;;
  stop) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
