package flows_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/miniotest"
	"github.com/sluicehq/sluice/storage"
	"github.com/sluicehq/sluice/storage/s3"
)

// BenchmarkWebhookLatency reports upload-to-thumbnail latency (p50, p99)
// on the webhook path: a 1 MP JPEG is put into a real MinIO, MinIO posts
// the event to the receiver, the engine (SQLite queue) makes a 256 px
// thumbnail, writes it back to MinIO and publishes a message, whose arrival
// ends the measurement. One image at a time.
func BenchmarkWebhookLatency(b *testing.B) {
	hook := miniotest.NewHook(b)
	// No queue_dir: MinIO posts at once. With a queue_dir every event goes
	// through MinIO's on-disk queue, which it polls every 3 s (p50 ≈ 3 s
	// here); without one, events posted while Sluice is down are dropped by
	// MinIO and caught up by Sluice's listing at start and every reconcile.
	srv := miniotest.Start(b, hook.Env("")...)
	storageURL := srv.URL() + "&notify_arn=" + miniotest.WebhookARN + "&reconcile=1m"
	dir := b.TempDir()
	h := startOnB(b, dir, "sqlite://"+filepath.Join(dir, "q.db")+"?poll=2ms", storageURL, `
name: thumbs
on: {bucket: photos}
steps:
  - node: image.thumbnail
    with: {width: 256, height: 256}
  - id: save
    node: storage.put
    with: {bucket: thumbs}
  - node: publish
    with: {topic: done, payload: 'object.key'}
`)
	hook.Set(h.store.Driver().(*s3.Driver).Receiver())
	store, err := storage.Open(context.Background(), storageURL)
	require.NoError(b, err)

	img := image.NewRGBA(image.Rect(0, 0, 1280, 800)) // 1 MP
	for y := 0; y < 800; y++ {
		for x := 0; x < 1280; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	require.NoError(b, jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}))

	sub, err := h.broker.Subscriber("bench-done")
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, err := sub.Subscribe(ctx, "done")
	require.NoError(b, err)

	// Warm-up, untimed: the first event may wait for the watch to register
	// (the receiver answers 503 until then and MinIO retries).
	_, err = store.PutBytes(context.Background(), "photos", "warm-up.jpg", buf.Bytes(), storage.PutOptions{})
	require.NoError(b, err)
	select {
	case m := <-done:
		m.Ack()
	case <-time.After(60 * time.Second):
		b.Fatal("no thumbnail for the warm-up image")
	}

	n := max(b.N, 50)
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("p-%04d.jpg", i)
		_, err := store.PutBytes(context.Background(), "photos", key, buf.Bytes(), storage.PutOptions{})
		require.NoError(b, err)
		start := time.Now()
		select {
		case m := <-done:
			m.Ack()
			require.Equal(b, fmt.Sprintf("%q", key), string(m.Payload))
		case <-time.After(30 * time.Second):
			b.Fatalf("no thumbnail for %s", key)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	b.ReportMetric(0, "ns/op")
}
