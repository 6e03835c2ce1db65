# Convenience targets; each is one command you can also run directly.
.PHONY: build test bench bench-images run validate clean

build:
	./scripts/deps.sh
	CGO_ENABLED=1 go build -o bin/sluice ./cmd/sluice

test:
	./scripts/test.sh

# Throughput of the engine next to a bare Watermill router, of the
# embedded queue, of state transitions next to raw SQLite, and of log
# archival next to gzip, on this machine (ratios are what to compare).
# Benchmarks on MinIO need the server scripts/test.sh builds (else skipped).
bench:
	command -v gzip >/dev/null || ./scripts/deps.sh gzip   # BenchmarkArchive's reference
	go test -run '^$$' -bench . -benchtime 10000x ./flows/ ./brokers/ ./nodes/statemachine/
	# functions: warm calls next to a transform, alternating; throughput; cold starts; deadline overshoot
	go test -run '^$$' -bench 'WarmCall|Throughput' -benchtime 3000x ./nodes/function/
	go test -run '^$$' -bench 'ColdStart|DeadlineOvershoot' -benchtime 5x ./nodes/function/

# 256 px thumbnails of real photos: Sluice next to libvips, 1 and 2 cores.
bench-images:
	./scripts/bench-images.sh

run:
	./scripts/run.sh examples/thumbnails

validate:
	go run ./cmd/sluice validate examples/

clean:
	rm -rf bin .sluice
