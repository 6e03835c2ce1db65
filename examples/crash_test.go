package examples_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/brokers"
	_ "github.com/sluicehq/sluice/brokers/kafka"
	"github.com/sluicehq/sluice/internal/miniotest"
	"github.com/sluicehq/sluice/storage"
)

// relayFlow turns each job into one result message.
const relayFlow = `
name: relay
on: {topic: jobs}
steps:
  - node: transform
    with: {set: {done: true}}
  - node: publish
    with: {topic: results}
`

const (
	crashMessages = 5000
	crashImages   = 200
)

// crashSetup is where a crash test's sluice keeps its work.
type crashSetup struct {
	brokerURL, storageURL string
	listen                string
	// graceful stops with SIGTERM instead of SIGKILL: runs in flight
	// finish and are acked, so nothing is redelivered.
	graceful bool
}

// TestCrashLosesNothingEmbedded: `sluice run` on the embedded default
// (SQLite queue, folder buckets) is killed with SIGKILL three times, at
// random points, while it relays 5,000 messages and thumbnails 200 images;
// restarted each time. In the end every input has exactly one completed
// run and exactly one output: nothing lost, nothing doubled.
func TestCrashLosesNothingEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts sluice three times")
	}
	embeddedCrashScenario(t, false)
}

// TestSIGTERMUnderLoadDrains: the same load, stopped three times with
// SIGTERM instead: each time runs in flight finish within the drain bound
// and sluice exits cleanly; the rest wait, unacked, for the restart, and
// nothing runs twice.
func TestSIGTERMUnderLoadDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and restarts sluice three times")
	}
	embeddedCrashScenario(t, true)
}

// TestCrashLosesNothingOnKafkaAndMinIO is the same on Kafka (in-process
// Kafka protocol) and a real MinIO server, whose webhook notifications
// wait in a queue folder while sluice is down.
func TestCrashLosesNothingOnKafkaAndMinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO; kills and restarts sluice three times")
	}
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(4))
	require.NoError(t, err)
	defer kafka.Close()
	listen := freeAddr(t)
	srv := miniotest.Start(t,
		"MINIO_NOTIFY_WEBHOOK_ENABLE_SLUICE=on",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_SLUICE=http://"+listen+"/hooks/s3",
		"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_SLUICE="+t.TempDir(),
	)
	crashScenario(t, t.TempDir(), crashSetup{
		brokerURL:  "kafka://" + strings.Join(kafka.ListenAddrs(), ",") + "?max_wait=20ms&partitions=4",
		storageURL: srv.URL() + "&notify_arn=arn:minio:sqs::SLUICE:webhook&reconcile=2s",
		listen:     listen,
	})
}

// embeddedCrashScenario runs crashScenario on the embedded default.
func embeddedCrashScenario(t *testing.T, graceful bool) {
	dir := t.TempDir()
	home := filepath.Join(dir, ".sluice")
	crashScenario(t, dir, crashSetup{
		brokerURL:  "sqlite://" + filepath.Join(home, "queue.db"),
		storageURL: "fs://" + filepath.Join(home, "buckets"),
		listen:     freeAddr(t),
		graceful:   graceful,
	})
}

func crashScenario(t *testing.T, dir string, cs crashSetup) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d", seed)
	t.Setenv("SLUICE_BROKER", cs.brokerURL)
	t.Setenv("SLUICE_STORAGE", cs.storageURL)
	// Three kills at random points: an input (a slow image on a loaded
	// machine) may be in flight at each of them, which the default of
	// three would dead-letter as poison (tested in poison_test.go). Here
	// every input must come out.
	t.Setenv("SLUICE_MAX_CRASHES", "4")
	flowFile := filepath.Join(dir, "relay.yaml")
	require.NoError(t, os.WriteFile(flowFile, []byte(relayFlow), 0o644))
	thumbnails, err := filepath.Abs("thumbnails")
	require.NoError(t, err)

	in := &instance{t: t, dir: dir, addr: cs.listen}
	startAt(t, in, flowFile, thumbnails)

	ctx := context.Background()
	br, err := brokers.Open(ctx, cs.brokerURL, nil)
	require.NoError(t, err)
	defer br.Close()
	store, err := storage.Open(ctx, cs.storageURL)
	require.NoError(t, err)
	defer store.Close()

	// Watch the results as they come (duplicates of an id included).
	results := map[string]int{}
	got := make(chan string, crashMessages*2)
	sub, err := br.Subscriber("crash-test-reader")
	require.NoError(t, err)
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, "results")
	require.NoError(t, err)
	go func() {
		for m := range msgs {
			var p map[string]any
			_ = json.Unmarshal(m.Payload, &p)
			m.Ack()
			got <- fmt.Sprintf("%s %v %v", m.UUID, p["i"], p["done"])
		}
	}()
	seen := func() int { // drains what arrived; returns distinct outputs so far
		for {
			select {
			case s := <-got:
				results[s]++
			default:
				return len(results)
			}
		}
	}

	// The inputs: 5,000 messages in batches, 200 images.
	go func() {
		for i := 0; i < crashMessages; i += 100 {
			batch := make([]*message.Message, 0, 100)
			for j := i; j < i+100; j++ {
				batch = append(batch, message.NewMessage(fmt.Sprintf("job-%04d", j), []byte(fmt.Sprintf(`{"i": %d}`, j))))
			}
			if err := br.Publisher().Publish("jobs", batch...); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
		}
	}()
	var jpg bytes.Buffer
	photoBytes(t, &jpg, 320, 240)
	require.NoError(t, store.EnsureBucket(ctx, "uploads"))
	go func() {
		for i := 0; i < crashImages; i++ {
			if _, err := store.PutBytes(ctx, "uploads", fmt.Sprintf("img-%03d.jpg", i), jpg.Bytes(), storage.PutOptions{}); err != nil {
				t.Errorf("upload: %v", err)
				return
			}
		}
	}()

	// Three kills at random points of the relay's progress.
	at := 0
	for kill := 0; kill < 3; kill++ {
		at += 300 + rng.IntN(1200)
		require.Eventually(t, func() bool { return seen() >= at }, 120*time.Second, 5*time.Millisecond,
			"kill %d: %v of %d results before it:\n%s", kill+1, lazy(func() string { return fmt.Sprint(len(results)) }), at, in.log)
		if cs.graceful {
			stopped := time.Now()
			in.stop() // SIGTERM; fails the test unless sluice exits cleanly
			assert.Less(t, time.Since(stopped), 10*time.Second, "drained within the bound")
		} else {
			require.NoError(t, in.cmd.Process.Kill()) // SIGKILL: no drain, no flush
			_ = in.cmd.Wait()
		}
		t.Logf("stop %d after %d results", kill+1, len(results))
		startAt(t, in, flowFile, thumbnails)
	}

	thumbs := func() int {
		n := 0
		_ = store.List(ctx, "thumbnails", "", func(storage.ObjectInfo) error { n++; return nil })
		return n
	}
	require.Eventually(t, func() bool { return seen() >= crashMessages && thumbs() >= crashImages }, 180*time.Second, 20*time.Millisecond,
		"%v of %d results, %v of %d thumbnails:\n%s", lazy(func() string { return fmt.Sprint(len(results)) }), crashMessages,
		lazy(func() string { return fmt.Sprint(thumbs()) }), crashImages, in.log)
	in.stop()

	// Every input has its output, once: duplicates, if any, carry the
	// same id (a crash between publishing and acking), never a new one.
	byInput := map[string][]string{}
	dupes := 0
	for s, n := range results {
		f := strings.Fields(s)
		byInput[f[1]] = append(byInput[f[1]], f[0])
		dupes += n - 1
	}
	for i := 0; i < crashMessages; i++ {
		assert.Len(t, byInput[fmt.Sprint(i)], 1, "input %d: one output id", i)
	}
	assert.Len(t, results, crashMessages)
	assert.Equal(t, crashImages, thumbs())
	t.Logf("%d outputs delivered again with their original id", dupes)

	// The ledger (a succeeded run is its input's completion): one
	// succeeded run per input.
	db, err := sql.Open("sqlite3", filepath.Join(dir, ".sluice", "state.db"))
	require.NoError(t, err)
	defer db.Close()
	count := func(q string, args ...any) int {
		var n int
		require.NoError(t, db.QueryRow(q, args...).Scan(&n))
		return n
	}
	assert.Equal(t, crashMessages, count(`SELECT COUNT(DISTINCT input) FROM runs WHERE flow = 'relay' AND status = 'succeeded'`))
	assert.Equal(t, crashImages, count(`SELECT COUNT(DISTINCT input) FROM runs WHERE flow = 'thumbnails' AND status = 'succeeded'`))
	assert.Zero(t, count(`SELECT COUNT(*) FROM (SELECT input FROM runs WHERE status = 'succeeded' GROUP BY flow, input HAVING COUNT(*) > 1)`),
		"no input has two succeeded runs")
	assert.Equal(t, crashMessages+crashImages, count(`SELECT COUNT(*) FROM runs WHERE status = 'succeeded'`))
	dupRuns := count(`SELECT COUNT(*) FROM runs WHERE status = 'duplicate'`)
	t.Logf("runs recorded as duplicates (redelivered after completion): %d", dupRuns)
	if cs.graceful {
		var flow, err string
		_ = db.QueryRow(`SELECT flow, error FROM runs WHERE status = 'duplicate' LIMIT 1`).Scan(&flow, &err)
		t.Logf("e.g. %s: %s", flow, err)
		t.Logf("by flow: relay %d, thumbnails %d", count(`SELECT COUNT(*) FROM runs WHERE status = 'duplicate' AND flow = 'relay'`), count(`SELECT COUNT(*) FROM runs WHERE status = 'duplicate' AND flow = 'thumbnails'`))
		assert.Zero(t, dupRuns, "a drained stop acks every run it finished: nothing comes back")
		assert.Zero(t, dupes, "nor is any output published twice")
	}

	rows, err := sql.Open("sqlite3", filepath.Join(dir, ".sluice", "data.db"))
	require.NoError(t, err)
	defer rows.Close()
	var n int
	require.NoError(t, rows.QueryRow(`SELECT COUNT(*) FROM images`).Scan(&n))
	assert.Equal(t, crashImages, n, "one row per image")
}

// lazy is a failure message argument computed when the message is
// printed (at the failure), not when the wait began.
type lazy func() string

func (l lazy) String() string { return l() }
