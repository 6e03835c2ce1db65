package telemetry_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/otlptest"
	"github.com/sluicehq/sluice/internal/telemetry"
)

// clearEnv unsets the variables FromEnv reads, for the test.
func clearEnv(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME"} {
		t.Setenv(k, "")
	}
}

func TestOffWithoutAnEndpoint(t *testing.T) {
	clearEnv(t)
	tr, err := telemetry.FromEnv(t.Context(), "sluice")
	require.NoError(t, err)
	assert.Nil(t, tr.Provider, "no endpoint: no provider, nothing traced")
	require.NoError(t, tr.Shutdown(t.Context()))

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	for k, v := range map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "none"} {
		t.Run(k, func(t *testing.T) {
			t.Setenv(k, v)
			tr, err := telemetry.FromEnv(t.Context(), "sluice")
			require.NoError(t, err)
			assert.Nil(t, tr.Provider)
		})
	}
}

func TestBadSettingsAreNamed(t *testing.T) {
	clearEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	_, err := telemetry.FromEnv(t.Context(), "sluice")
	assert.ErrorContains(t, err, `OTEL_EXPORTER_OTLP_PROTOCOL="http/json": use grpc or http/protobuf`)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
	_, err = telemetry.FromEnv(t.Context(), "sluice")
	assert.ErrorContains(t, err, `OTEL_TRACES_EXPORTER="zipkin"`)
}

// TestGRPCExportFlushedAtShutdown: with protocol grpc, spans reach an
// OTLP/gRPC receiver, those still buffered when Shutdown is called
// included (the batch delay is far longer than the test).
func TestGRPCExportFlushedAtShutdown(t *testing.T) {
	clearEnv(t)
	g := otlptest.StartGRPC(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", g.Endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
	t.Setenv("OTEL_SERVICE_NAME", "billing")
	tr, err := telemetry.FromEnv(t.Context(), "sluice")
	require.NoError(t, err)
	require.NotNil(t, tr.Provider)
	assert.Equal(t, "grpc", tr.Protocol)
	_, span := tr.Provider.Tracer("test").Start(t.Context(), "run orders")
	span.End()
	assert.Empty(t, g.Spans(), "buffered until the batch is due")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, tr.Shutdown(ctx))
	spans := g.Spans()
	require.Len(t, spans, 1)
	assert.Equal(t, "run orders", spans[0].Name)
	assert.Equal(t, "billing", spans[0].Service, "OTEL_SERVICE_NAME wins over the default")
}
