package examples_test

import (
	"bytes"
	"context"
	"image"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/internal/miniotest"
	"github.com/sluicehq/sluice/storage"
	_ "github.com/sluicehq/sluice/storage/s3"
)

// TestThumbnailsOnMinIOAndKafka runs the thumbnails example as its README's
// "on MinIO and Kafka" section says: a real MinIO server whose webhook
// target posts to sluice's /hooks/s3, and a Kafka-protocol broker.
func TestThumbnailsOnMinIOAndKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer kafka.Close()

	dir := t.TempDir()
	listen := freeAddr(t)
	srv := miniotest.Start(t,
		"MINIO_NOTIFY_WEBHOOK_ENABLE_SLUICE=on",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_SLUICE=http://"+listen+"/hooks/s3",
		"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_SLUICE=hook-secret",
		"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_SLUICE="+t.TempDir(),
	)
	storageURL := srv.URL() + "&notify_arn=arn:minio:sqs::SLUICE:webhook"
	brokerURL := "kafka://" + strings.Join(kafka.ListenAddrs(), ",") + "?max_wait=20ms"
	t.Setenv("SLUICE_WEBHOOK_TOKEN", "hook-secret")
	t.Setenv("SLUICE_BROKER", brokerURL)
	t.Setenv("SLUICE_STORAGE", storageURL)

	flow, err := filepath.Abs("thumbnails")
	require.NoError(t, err)
	in := &instance{t: t, dir: dir, addr: listen}
	startAt(t, in, flow)

	photo(t, filepath.Join(dir, "photo.jpg"), 800, 600)
	cli(t, dir, "put", "uploads", "photo.jpg")

	store, err := storage.Open(context.Background(), storageURL)
	require.NoError(t, err)
	var data []byte
	require.Eventually(t, func() bool {
		data, _, err = store.ReadAll(context.Background(), "thumbnails", "photo.jpg", 0)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "no thumbnail in MinIO:\n%s", in.log)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	require.NoError(t, err)
	assert.Equal(t, [2]int{256, 192}, [2]int{cfg.Width, cfg.Height})
}
