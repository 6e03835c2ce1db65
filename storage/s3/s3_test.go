package s3_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/miniotest"
	"github.com/sluicehq/sluice/storage"
	_ "github.com/sluicehq/sluice/storage/s3"
	"github.com/sluicehq/sluice/storage/storagetest"
)

// TestConformance runs the storage suite against a real MinIO server. Each
// subtest gets the server with its buckets emptied.
func TestConformance(t *testing.T) {
	srv := miniotest.Start(t)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		s, err := storage.Open(t.Context(), srv.URL())
		require.NoError(t, err)
		emptyAll(t, s, "bucket-a")
		return s
	})
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
