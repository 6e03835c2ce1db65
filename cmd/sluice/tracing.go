package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/internal/telemetry"
)

// startTracing sets up OpenTelemetry tracing from the OTEL_* environment
// (off, at no cost, when no OTLP endpoint is set). stop flushes the spans
// still buffered, bounded by a few seconds; call it after the engine ends.
func startTracing(ctx context.Context, log *slog.Logger) (*telemetry.Tracing, func(), error) {
	tr, err := telemetry.FromEnv(ctx, "sluice")
	if err != nil {
		return nil, nil, err
	}
	if tr.Provider == nil {
		return tr, func() {}, nil
	}
	log.Info("tracing runs with OpenTelemetry", "protocol", tr.Protocol, "endpoint", tr.Endpoint)
	return tr, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil {
			log.Warn("flushing traces failed", "error", err)
		}
	}, nil
}
