#!/usr/bin/env bash
# Runs the whole test suite from a clean checkout, installing what it needs.
# Needs Go (see go.mod) and, for cgo (SQLite), a C compiler: installed with
# apt-get when missing. Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
# docker-compose (no engine needed) validates docker-compose.yml in the tests.
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} (apt-get)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

export CGO_ENABLED=1

# A real MinIO server for the S3 driver's tests, built once into .cache/bin
# (about 3-6 minutes cold). Pinned: see NOTES in the closing notes / README.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
mkdir -p .cache/bin
if [ ! -x .cache/bin/minio ] || [ "$(cat .cache/bin/minio.version 2>/dev/null)" != "$MINIO_VERSION" ]; then
  echo "== building MinIO server $MINIO_VERSION into .cache/bin (once)"
  GOBIN="$PWD/.cache/bin" CGO_ENABLED=0 go install "github.com/minio/minio@$MINIO_VERSION"
  echo "$MINIO_VERSION" > .cache/bin/minio.version
fi
export SLUICE_MINIO_BIN="$PWD/.cache/bin/minio"

echo "== go vet"
go vet ./...
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
echo "== go test"
race=-race
[ "${SLUICE_TEST_NORACE:-}" = 1 ] && race=
go test $race -count=1 -timeout 20m "$@" ./...
