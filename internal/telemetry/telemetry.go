// Package telemetry sets up OpenTelemetry tracing from the standard
// OTEL_* environment variables: an OTLP exporter (gRPC or HTTP) when an
// endpoint is configured, nothing at all otherwise.
package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracing is a configured tracer provider and how to stop it.
type Tracing struct {
	// Provider is nil when tracing is off.
	Provider trace.TracerProvider
	// Protocol and Endpoint say where spans go (for the log).
	Protocol, Endpoint string
	shutdown           func(context.Context) error
}

// Shutdown flushes the spans not exported yet and stops the exporter,
// within ctx. It is a no-op when tracing is off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// FromEnv configures tracing from the environment, with service as the
// default service.name. Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, unless OTEL_SDK_DISABLED is
// true or OTEL_TRACES_EXPORTER is "none". OTEL_EXPORTER_OTLP(_TRACES)_PROTOCOL
// selects "grpc" or "http/protobuf" (the default); the exporters read the
// other OTEL_EXPORTER_OTLP_* variables (headers, timeout, TLS, compression),
// the SDK reads OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_*, and the resource
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
func FromEnv(ctx context.Context, service string) (*Tracing, error) {
	endpoint := firstEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
	if endpoint == "" || strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return &Tracing{}, nil
	}
	switch exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp {
	case "", "otlp":
	case "none":
		return &Tracing{}, nil
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: sluice exports traces with otlp (or none)", exp)
	}
	protocol := firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	if protocol == "" {
		protocol = "http/protobuf"
	}
	var exp sdktrace.SpanExporter
	var err error
	switch protocol {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: use grpc or http/protobuf", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter (%s, %s): %w", protocol, endpoint, err)
	}
	res, err := resource.Merge(resource.NewSchemaless(attribute.String("service.name", service)), resource.Environment())
	if err != nil {
		// Only a schema clash between the two: keep what merged.
		res = resource.Environment()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{Provider: tp, Protocol: protocol, Endpoint: endpoint, shutdown: tp.Shutdown}, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}
