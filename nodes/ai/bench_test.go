package ai_test

import (
	"testing"

	"golang.org/x/image/font/gofont/goregular"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

// BenchmarkOCRPage is one ai.ocr call on a rendered page of five lines,
// decoding included; the calls report each model's inference time.
func BenchmarkOCRPage(b *testing.B) {
	ocrModels(b)
	n := nodestest.New(&testing.T{}, "ai.ocr", `{sessions: 1}`, nodes.Deps{})
	if err := n.(nodes.Starter).Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer n.(nodes.Closer).Close()
	body := pngBytes(b, render(b, goregular.TTF, 32, page...))
	per := map[string]float64{}
	b.ResetTimer()
	for b.Loop() {
		d := nodes.NewDelivery(nil, 0)
		env := d.Envelope()
		env.SetBody(body, "image/png")
		if err := n.Process(b.Context(), env); err != nil {
			b.Fatal(err)
		}
		for _, c := range d.TakeCalls() {
			per[c.Name] += float64(c.Duration.Microseconds()) / 1000
		}
	}
	for k, v := range per {
		b.ReportMetric(v/float64(b.N), k+"-ms/op")
	}
}
