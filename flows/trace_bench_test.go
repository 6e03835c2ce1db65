package flows

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/brokers"
	_ "github.com/sluicehq/sluice/nodes/core"
)

// runPathFlow is two cheap steps, so the engine's own cost per run and
// per step shows.
const runPathFlow = `name: path
on: {topic: in}
steps:
  - node: transform
    with:
      set: {total: payload.qty * payload.price}
  - node: transform
    with:
      set: {checked: "true"}
`

// BenchmarkRunPath is one message's run through begin → exec → settle on
// a runner, no broker or ledger in the way: tracing off (no provider: the
// path as it was before tracing), on with every run sampled (spans made
// and handed to a batching exporter that drops them), and on with no run
// sampled (OTEL_TRACES_SAMPLER=always_off: context propagated, nothing
// recorded). Compare ns/op of the sub-benchmarks run side by side.
func BenchmarkRunPath(b *testing.B) {
	for _, tc := range []struct {
		name string
		tp   func() trace.TracerProvider
	}{
		{"off", func() trace.TracerProvider { return nil }},
		{"on", func() trace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		}},
		{"unsampled", func() trace.TracerProvider {
			return sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := benchRunner(b, tc.tp())
			payload := []byte(`{"qty": 3, "price": 2.5}`)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				msg := message.NewMessage(strconv.Itoa(i), payload)
				msg.Metadata.Set(MetaRun, "01PARENT")
				d := r.begin(msg)
				r.exec(context.Background(), d, r.f.Steps)
				if err := r.settle(d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchRunner is the runner of runPathFlow on an engine without state.
func benchRunner(b *testing.B, tp trace.TracerProvider) *runner {
	b.Helper()
	file := filepath.Join(b.TempDir(), "flow.yaml")
	require.NoError(b, os.WriteFile(file, []byte(runPathFlow), 0o644))
	fl, err := Loader{}.Load(file)
	require.NoError(b, err)
	br, err := brokers.Open(b.Context(), "mem://", nil)
	require.NoError(b, err)
	b.Cleanup(func() { br.Close() })
	opts := Options{Broker: br, Logger: slog.New(slog.DiscardHandler)}
	if tp != nil {
		opts.TracerProvider = tp
	}
	e, err := NewEngine(opts, fl)
	require.NoError(b, err)
	return e.runners[0]
}
