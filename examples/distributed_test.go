package examples_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	_ "github.com/sluicehq/sluice/brokers/kafka"
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

// TestTwoProcessesOneKilled: two `sluice run` processes share the thumbnails
// flow on MinIO + Kafka. MinIO's webhook posts to the first; it is killed
// (SIGKILL) while 200 photos are being uploaded. The second takes over the
// Kafka partitions and, listing the bucket every second, also finds the
// uploads whose notifications went to the dead process. Every photo gets
// its thumbnail.
func TestTwoProcessesOneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO and two sluice processes")
	}
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer kafka.Close()
	addrA, addrB := freeAddr(t), freeAddr(t)
	srv := miniotest.Start(t,
		"MINIO_NOTIFY_WEBHOOK_ENABLE_SLUICE=on",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_SLUICE=http://"+addrA+"/hooks/s3",
	)
	base := srv.URL() + "&notify_arn=arn:minio:sqs::SLUICE:webhook"
	t.Setenv("SLUICE_BROKER", "kafka://"+strings.Join(kafka.ListenAddrs(), ",")+"?max_wait=20ms&partitions=4")
	flow, err := filepath.Abs("thumbnails")
	require.NoError(t, err)

	t.Setenv("SLUICE_STORAGE", base+"&reconcile=0")
	a := &instance{t: t, dir: t.TempDir(), addr: addrA}
	startAt(t, a, flow)
	t.Setenv("SLUICE_STORAGE", base+"&reconcile=1s")
	b := &instance{t: t, dir: t.TempDir(), addr: addrB}
	startAt(t, b, flow)

	store, err := storage.Open(context.Background(), base)
	require.NoError(t, err)
	var jpg bytes.Buffer
	photoBytes(t, &jpg, 640, 480)
	for i := 0; i < 200; i++ {
		if i == 80 {
			require.NoError(t, a.cmd.Process.Kill())
			_ = a.cmd.Wait()
		}
		_, err := store.PutBytes(context.Background(), "uploads", fmt.Sprintf("p-%03d.jpg", i), jpg.Bytes(), storage.PutOptions{})
		require.NoError(t, err)
	}
	missing := func() []string {
		var out []string
		for i := 0; i < 200; i++ {
			if _, err := store.Stat(context.Background(), "thumbnails", fmt.Sprintf("p-%03d.jpg", i)); err != nil {
				out = append(out, fmt.Sprint(i))
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(missing()) == 0 }, 90*time.Second, 250*time.Millisecond,
		"thumbnails missing: %v\nsurvivor's log:\n%s", missing, b.log)
	data, _, err := store.ReadAll(context.Background(), "thumbnails", "p-199.jpg", 0)
	require.NoError(t, err)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	require.NoError(t, err)
	assert.Equal(t, [2]int{256, 192}, [2]int{cfg.Width, cfg.Height})
}
