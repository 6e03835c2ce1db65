#!/usr/bin/env bash
# Builds and runs sluice from this checkout, installing build dependencies
# first (see deps.sh). Arguments go to `sluice run`; default: the
# thumbnails example on the embedded SQLite queue and folder buckets.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export CGO_ENABLED=1
if [ $# -eq 0 ]; then set -- examples/thumbnails; fi
exec go run ./cmd/sluice run "$@"
