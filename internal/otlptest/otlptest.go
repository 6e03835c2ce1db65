// Package otlptest is an in-process OTLP/HTTP trace receiver for tests:
// it decodes the exporters' protobuf requests and keeps the spans.
package otlptest

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is a received span, ids in hex.
type Span struct {
	Name                  string
	TraceID, ID, ParentID string
	Kind                  tracepb.Span_SpanKind
	Attrs                 map[string]string // string and int values, as text
	Error                 bool              // status code error
	Service               string            // the resource's service.name
}

// Receiver is an OTLP/HTTP endpoint; URL is what OTEL_EXPORTER_OTLP_ENDPOINT
// takes (the exporter posts to URL/v1/traces).
type Receiver struct {
	URL   string
	mu    sync.Mutex
	spans []Span
}

// Start starts a receiver, closed when the test ends.
func Start(t testing.TB) *Receiver {
	rc := &Receiver{}
	srv := httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		http.Error(w, "not an OTLP trace export: "+err.Error(), http.StatusBadRequest)
		return
	}
	rc.keep(&req)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// keep decodes and keeps an export request's spans.
func (rc *Receiver) keep(req *collectortrace.ExportTraceServiceRequest) {
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{Name: s.GetName(), TraceID: hex.EncodeToString(s.GetTraceId()), ID: hex.EncodeToString(s.GetSpanId()),
					ParentID: hex.EncodeToString(s.GetParentSpanId()), Kind: s.GetKind(), Attrs: map[string]string{},
					Error: s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR, Service: service}
				for _, a := range s.GetAttributes() {
					v := a.GetValue()
					if _, ok := v.GetValue().(*commonpb.AnyValue_IntValue); ok {
						sp.Attrs[a.GetKey()] = strconv.FormatInt(v.GetIntValue(), 10)
					} else {
						sp.Attrs[a.GetKey()] = v.GetStringValue()
					}
				}
				got = append(got, sp)
			}
		}
	}
	rc.mu.Lock()
	rc.spans = append(rc.spans, got...)
	rc.mu.Unlock()
}

// Spans returns the spans received so far.
func (rc *Receiver) Spans() []Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Span(nil), rc.spans...)
}

// Find returns the received spans named name.
func (rc *Receiver) Find(name string) []Span {
	var out []Span
	for _, s := range rc.Spans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// GRPCReceiver is an OTLP/gRPC trace receiver on loopback; Endpoint is
// what OTEL_EXPORTER_OTLP_ENDPOINT takes (with
// OTEL_EXPORTER_OTLP_PROTOCOL=grpc and OTEL_EXPORTER_OTLP_INSECURE=true).
type GRPCReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	Endpoint string
	rc       Receiver
}

// StartGRPC starts a gRPC receiver, stopped when the test ends.
func StartGRPC(t testing.TB) *GRPCReceiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &GRPCReceiver{Endpoint: "http://" + ln.Addr().String()}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, g)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return g
}

// Export keeps the request's spans.
func (g *GRPCReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	g.rc.keep(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Spans returns the spans received so far.
func (g *GRPCReceiver) Spans() []Span { return g.rc.Spans() }
