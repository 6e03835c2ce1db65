package s3_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/miniotest"
	"github.com/sluicehq/sluice/storage"
	_ "github.com/sluicehq/sluice/storage/s3"
	"github.com/sluicehq/sluice/storage/storagetest"
)

// TestConformance runs the storage suite against a real MinIO server whose
// webhook notification target posts to the driver's receiver, with the
// bucket rule set by Sluice. Each subtest gets the buckets emptied.
func TestConformance(t *testing.T) {
	hook := miniotest.NewHook(t)
	srv := miniotest.Start(t, hook.Env(t.TempDir())...)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		s, err := storage.Open(t.Context(), srv.URL()+"&notify_arn="+miniotest.WebhookARN+"&reconcile=0")
		require.NoError(t, err)
		var wr storage.WebhookReceiver
		require.True(t, s.As(&wr))
		hook.Set(wr.WebhookHandler())
		emptyAll(t, s, "bucket-a")
		return s
	})
}

func TestReceiverRejectsBadRequests(t *testing.T) {
	t.Setenv("SLUICE_WEBHOOK_TOKEN", "secret")
	s, err := storage.Open(t.Context(), "s3://localhost:1?secure=false")
	require.NoError(t, err)
	var wr storage.WebhookReceiver
	require.True(t, s.As(&wr), "the s3 driver receives webhooks")
	rc := wr.WebhookHandler()
	for _, tc := range []struct {
		method, auth, body string
		want               int
	}{
		{"GET", "Bearer secret", "", http.StatusMethodNotAllowed},
		{"POST", "", `{"Records":[]}`, http.StatusUnauthorized},
		{"POST", "Bearer wrong", `{"Records":[]}`, http.StatusUnauthorized},
		{"POST", "Bearer secret", `not json`, http.StatusBadRequest},
		{"POST", "Bearer secret", strings.Repeat("x", 5<<20), http.StatusRequestEntityTooLarge},
		{"POST", "Bearer secret", `{"Records":[]}`, http.StatusOK},
		{"POST", "Bearer secret", `{"Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, http.StatusServiceUnavailable},
	} {
		req := httptest.NewRequest(tc.method, "/hooks/s3", strings.NewReader(tc.body))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		rc.ServeHTTP(rec, req)
		assert.Equal(t, tc.want, rec.Code, "%s %s", tc.method, tc.auth)
	}
}

func emptyAll(t *testing.T, s *storage.Store, bucket string) {
	t.Helper()
	ctx := context.Background()
	if err := s.EnsureBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	var keys []string
	require.NoError(t, s.List(ctx, bucket, "", func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil }))
	for _, k := range keys {
		require.NoError(t, s.Delete(ctx, bucket, k))
	}
}

func TestURLErrors(t *testing.T) {
	for url, want := range map[string]string{
		"s3://":                     "needs an endpoint",
		"s3://h:9000?secure=maybe":  "secure must be true or false",
		"s3://h:9000?path_style=no": "path_style must be true or false",
	} {
		_, err := storage.Open(context.Background(), url)
		require.ErrorContains(t, err, want, url)
	}
}
