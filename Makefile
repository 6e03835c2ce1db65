# Convenience targets; each is one command you can also run directly.
.PHONY: build test bench bench-images bench-peer bench-ai run validate clean

build:
	./scripts/deps.sh
	CGO_ENABLED=1 go build -o bin/sluice ./cmd/sluice

test:
	./scripts/test.sh

# Throughput of the engine next to a bare Watermill router, of the
# embedded queue, of state transitions next to raw SQLite, and of log
# archival next to gzip, on this machine (ratios are what to compare).
# Benchmarks on MinIO need the server scripts/test.sh builds (else skipped);
# those on PostgreSQL (the ledger and transitions) get a throwaway server.
bench:
	command -v gzip >/dev/null || ./scripts/deps.sh gzip   # BenchmarkArchive's reference
	./scripts/services/postgres.sh with go test -run '^$$' -bench . -benchtime 10000x ./flows/ ./brokers/ ./nodes/statemachine/ ./state/
	./scripts/bench-ai.sh   # ai.ocr and the classifier next to onnxruntime-node (fetches models and the Node side)
	# functions: warm calls next to a transform, alternating; throughput; cold starts; deadline overshoot
	go test -run '^$$' -bench 'WarmCall|Throughput|WasmVsWazero' -benchtime 3000x ./nodes/function/
	go test -run '^$$' -bench 'ColdStart|DeadlineOvershoot' -benchtime 5x ./nodes/function/

# PaddleOCR through Sluice flows next to the same models on onnxruntime-node
# (per-call latency, alternating rounds; throughput at 2 in flight; peak RSS).
bench-ai:
	./scripts/bench-ai.sh

# 256 px thumbnails of real photos: Sluice next to libvips, 1 and 2 cores;
# then the thumbnails example end to end (sluice run) next to vipsthumbnail.
bench-images:
	./scripts/bench-images.sh

# Sluice next to Benthos (built in its own module under bench/peer) over the
# same 200,000-message pipeline, alternating rounds; prints the ratios.
bench-peer:
	./scripts/bench-peer.sh

run:
	./scripts/run.sh examples/thumbnails

validate:
	go run ./cmd/sluice validate examples/

clean:
	rm -rf bin .sluice
