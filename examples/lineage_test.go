package examples_test

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/miniotest"
	"github.com/sluicehq/sluice/internal/otlptest"
)

// lineageFlows: ingest takes an uploaded file, writes a copy to the
// processed bucket and announces it on a topic; record consumes the
// announcement and inserts a row naming its run; index runs on the copy
// (a bucket event: its parent comes from the object's metadata).
var lineageFlows = map[string]string{
	"ingest.yaml": `name: ingest
on:
  bucket: uploads
steps:
  - id: save
    node: storage.put
    with: {bucket: processed}
  - id: announce
    node: publish
    with: {topic: ingested}
`,
	"record.yaml": `name: record
on:
  topic: ingested
steps:
  - id: row
    node: db.insert
    with:
      table: files
      key: [key]
      lineage_column: run_id
      columns: {key: payload.key}
`,
	"index.yaml": `name: index
on:
  bucket: processed
steps:
  - id: note
    node: transform
    with:
      set: {indexed: "true"}
`,
}

// lineageNode is a run of `sluice runs show --tree --json`.
type lineageNode struct {
	ID       string         `json:"id"`
	Flow     string         `json:"flow"`
	Input    string         `json:"input"`
	Parent   string         `json:"parent_run"`
	TraceID  string         `json:"trace_id"`
	Selected bool           `json:"selected"`
	Children []*lineageNode `json:"children"`
}

func runTree(t *testing.T, dir, id string) *lineageNode {
	t.Helper()
	var n lineageNode
	require.NoError(t, json.Unmarshal([]byte(cli(t, dir, "runs", "show", id, "--tree", "--json")), &n))
	return &n
}

// onlyRun is the id of the one run of flow.
func onlyRun(t *testing.T, dir, flow string) lineageNode {
	t.Helper()
	var n lineageNode
	out := strings.TrimSpace(cli(t, dir, "runs", "--flow", flow, "--json"))
	require.NotContains(t, out, "\n", "one run of %s", flow)
	require.NoError(t, json.Unmarshal([]byte(out), &n))
	return n
}

// TestLineageFromAnUpload: an uploaded file feeds ingest, whose object and
// message feed index and record. Every run records its parent; --tree
// from the first run shows the runs it fed, from the last it goes back to
// the upload; the row written names its run; and the bucket event starts
// a trace of its own while the message continues ingest's.
// On S3 (MinIO) the object's metadata reaches the event through the
// notification webhook.
func TestLineageFromAnUpload(t *testing.T) {
	for _, driver := range []string{"fs", "s3"} {
		t.Run(driver, func(t *testing.T) { lineageFromAnUpload(t, driver) })
	}
}

func lineageFromAnUpload(t *testing.T, driver string) {
	rc := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rc.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
	dir := t.TempDir()
	in := &instance{t: t, dir: dir, addr: freeAddr(t)}
	if driver == "s3" {
		if testing.Short() {
			t.Skip("starts MinIO")
		}
		srv := miniotest.Start(t,
			"MINIO_NOTIFY_WEBHOOK_ENABLE_SLUICE=on",
			"MINIO_NOTIFY_WEBHOOK_ENDPOINT_SLUICE=http://"+in.addr+"/hooks/s3",
			"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_SLUICE="+t.TempDir(),
		)
		t.Setenv("SLUICE_STORAGE", srv.URL()+"&notify_arn="+miniotest.WebhookARN)
	}
	startAt(t, in, writeFlows(t, lineageFlows))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "report.txt"), []byte("quarterly numbers"), 0o644))
	cli(t, dir, "put", "uploads", "report.txt")

	require.Eventually(t, func() bool {
		for _, flow := range []string{"ingest", "record", "index"} {
			if !strings.Contains(cli(t, dir, "runs", "--flow", flow, "--status", "succeeded"), flow) {
				return false
			}
		}
		return true
	}, 20*time.Second, 50*time.Millisecond, "all three flows ran:\n%s", in.log)

	ingest, record, index := onlyRun(t, dir, "ingest"), onlyRun(t, dir, "record"), onlyRun(t, dir, "index")
	assert.True(t, strings.HasPrefix(ingest.Input, "uploads/report.txt@"), "the source is the upload: %s", ingest.Input)
	assert.Empty(t, ingest.Parent, "an upload from outside has no parent run")
	assert.Equal(t, ingest.ID, record.Parent, "a message's run: its parent published it")
	assert.Equal(t, ingest.ID, index.Parent, "an object's run: its parent wrote it (object metadata)")

	// Forward from the first run: both runs it fed.
	tree := runTree(t, dir, ingest.ID)
	assert.Equal(t, ingest.ID, tree.ID)
	assert.True(t, tree.Selected)
	var fed []string
	for _, c := range tree.Children {
		fed = append(fed, c.Flow)
		assert.Equal(t, ingest.ID, c.Parent)
	}
	assert.ElementsMatch(t, []string{"record", "index"}, fed)

	// Back from the last run: to the upload.
	tree = runTree(t, dir, record.ID)
	assert.Equal(t, ingest.ID, tree.ID, "the tree starts at the source")
	assert.True(t, strings.HasPrefix(tree.Input, "uploads/report.txt@"))
	assert.False(t, tree.Selected)
	require.Len(t, tree.Children, 1, "only the chain to the run asked for")
	assert.Equal(t, record.ID, tree.Children[0].ID)
	assert.True(t, tree.Children[0].Selected)

	text := cli(t, dir, "runs", "show", record.ID, "--tree")
	lines := strings.Split(strings.TrimSpace(text), "\n")
	require.Len(t, lines, 2, text)
	assert.True(t, strings.HasPrefix(lines[0], ingest.ID+"  ingest  succeeded  bucket:uploads  uploads/report.txt@"), text)
	assert.True(t, strings.HasPrefix(lines[1], "└─ "+record.ID+"  record  succeeded"), text)
	assert.Contains(t, lines[1], " *", "the run asked for is marked")

	// The row names the run that wrote it.
	db, err := sql.Open("sqlite3", filepath.Join(dir, ".sluice", "data.db"))
	require.NoError(t, err)
	defer db.Close()
	var runID string
	require.NoError(t, db.QueryRow(`SELECT run_id FROM files WHERE key = 'report.txt'`).Scan(&runID))
	assert.Equal(t, record.ID, runID)

	// Traces: the message carries ingest's trace on; the bucket event
	// starts a new one.
	require.NotEmpty(t, ingest.TraceID)
	assert.Equal(t, ingest.TraceID, record.TraceID)
	require.NotEmpty(t, index.TraceID)
	assert.NotEqual(t, ingest.TraceID, index.TraceID)
}
