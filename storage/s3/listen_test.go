package s3

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/storage"
)

// TestListenStream drives the listen path over real HTTP with the real
// minio-go client, against a server streaming what MinIO's listen API
// streams (one JSON document per line, keys unescaped, spaces as
// keepalives). The pinned MinIO server's own listen API does not deliver (its
// S3 middleware's response writer cannot flush), and the module proxy
// serves no earlier MinIO version, so this is the end-to-end test here.
func TestListenStream(t *testing.T) {
	got := make(chan url.Values, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/uploads/" || !r.URL.Query().Has("events") {
			t.Logf("unexpected request %s %s", r.Method, r.URL)
			http.Error(w, "unexpected request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		got <- r.URL.Query()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fl := w.(http.Flusher)
		fmt.Fprint(w, " ") // MinIO's keepalive: a space, before a document or alone
		fl.Flush()
		for _, line := range []string{
			`{"Records":[{"eventVersion":"2.0","eventSource":"minio:s3","eventTime":"2026-11-25T10:00:00.000Z","eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},"object":{"key":"photos/my cat+dog.jpg","size":1234,"eTag":"abc123","contentType":"image/jpeg"}}}]}`,
			`{"Records":[{"eventName":"s3:ObjectRemoved:Delete","eventTime":"2026-11-25T10:00:01Z","s3":{"bucket":{"name":"uploads"},"object":{"key":"old.txt"}}}]}`,
		} {
			fmt.Fprintln(w, line)
			fl.Flush()
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	u, err := url.Parse("s3://key:secret@" + srv.Listener.Addr().String() + "?secure=false&path_style=true&region=us-east-1&notify=listen")
	require.NoError(t, err)
	drv, err := open(context.Background(), u)
	require.NoError(t, err)
	d := drv.(*Driver)
	require.True(t, d.listen)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events := make(chan storage.ObjectEvent, 4)
	done := make(chan error, 1)
	go func() { done <- d.listenEvents(ctx, "uploads", events) }()
	var q url.Values
	select {
	case q = <-got:
	case err := <-done:
		t.Fatalf("listen ended before its request: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no listen request")
	}
	assert.ElementsMatch(t, []string{"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}, q["events"])

	var evs []storage.ObjectEvent
	for len(evs) < 2 {
		select {
		case ev := <-events:
			evs = append(evs, ev)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d of 2 events", len(evs))
		}
	}
	assert.Equal(t, storage.ObjectEvent{Name: "s3:ObjectCreated:Put", Bucket: "uploads", Key: "photos/my cat+dog.jpg", Size: 1234,
		ETag: "abc123", ContentType: "image/jpeg", Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Source: "minio-listen"}, evs[0],
		"keys in listen streams are not query-escaped: '+' stays '+'")
	assert.True(t, evs[0].Created())
	assert.Equal(t, "old.txt", evs[1].Key)
	assert.False(t, evs[1].Created())
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)

	_, err = open(context.Background(), mustURL(t, "s3://h:1?notify=poll"))
	assert.ErrorContains(t, err, "notify must be webhook or listen")
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}
