package ai

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the inference metrics of every model the process runs:
// sluice_model_inference_seconds{model, outcome}, a histogram of runtime
// calls (one observation per call to the runtime, a batch counting once).
// `sluice run` registers it on the registry /metrics serves; it is not
// registered on Prometheus's default registry.
var Metrics prometheus.Collector = inference

var inference = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "sluice_model_inference_seconds",
	Help:    "Time ONNX Runtime took per call, by model and outcome (ok, error).",
	Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms … 16 s
}, []string{"model", "outcome"})

func observe(model string, d time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	inference.WithLabelValues(model, outcome).Observe(d.Seconds())
}
