package examples_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/miniotest"
	"github.com/sluicehq/sluice/storage"
)

// storageFlows moves every object written to inbox into archive (copy,
// then delete), records each deletion as the `removed` event a bucket flow
// receives, and lists the archive on demand.
const storageFlows = `
name: writer
on: {topic: files}
steps:
  - node: storage.put
    with: {bucket: inbox, key: "{{ payload.key }}", content: payload}
---
name: mover
on: {bucket: inbox}
steps:
  - id: copied
    node: storage.copy
    with: {to_bucket: archive, to_key: "moved/{{ object.key }}"}
  - node: storage.delete
---
name: tombstone
on: {bucket: inbox, events: [removed]}
steps:
  - node: publish
    with: {topic: gone}
---
name: inventory
on: {topic: inventory}
steps:
  - node: storage.list
    with: {bucket: archive, prefix: moved/}
  - node: publish
    with: {topic: inventory.out}
  - node: storage.list
    with: {bucket: archive, prefix: moved/, output: messages, topic: archived}
`

// TestStorageNodesAndRemovedEvents runs the flows above through the
// binary on each storage driver: folder, in-memory and MinIO (webhook
// notifications). Every object is moved, every deletion triggers the
// removed flow once, and the listings see the archive.
func TestStorageNodesAndRemovedEvents(t *testing.T) {
	for _, driver := range []string{"fs", "mem", "s3"} {
		t.Run(driver, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "flows.yaml"), []byte(storageFlows), 0o644))
			listen := freeAddr(t)
			var store *storage.Store
			switch driver {
			case "mem":
				t.Setenv("SLUICE_STORAGE", "mem://")
			case "s3":
				if testing.Short() {
					t.Skip("starts MinIO")
				}
				srv := miniotest.Start(t,
					"MINIO_NOTIFY_WEBHOOK_ENABLE_SLUICE=on",
					"MINIO_NOTIFY_WEBHOOK_ENDPOINT_SLUICE=http://"+listen+"/hooks/s3",
					"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_SLUICE="+t.TempDir(),
				)
				url := srv.URL() + "&notify_arn=" + miniotest.WebhookARN
				t.Setenv("SLUICE_STORAGE", url)
				var err error
				store, err = storage.Open(context.Background(), url)
				require.NoError(t, err)
			default:
				var err error
				store, err = storage.Open(context.Background(), "fs://"+filepath.Join(dir, ".sluice", "buckets"))
				require.NoError(t, err)
			}
			in := &instance{t: t, dir: dir, addr: listen}
			startAt(t, in, "flows.yaml")

			keys := []string{"a.json", "b.json", "sub/c.json"}
			for _, k := range keys {
				cli(t, dir, "publish", "files", fmt.Sprintf(`{"key": %q}`, k))
			}
			// Each object's deletion is one removed event, so one run of
			// the tombstone flow, with the key.
			tombstones := func() []string {
				var got []string
				for _, line := range strings.Split(strings.TrimSpace(cli(t, dir, "runs", "--flow", "tombstone", "--json", "--limit", "100")), "\n") {
					var r struct{ Status, Input string }
					if line == "" || json.Unmarshal([]byte(line), &r) != nil || r.Status != "succeeded" {
						continue
					}
					got = append(got, r.Input)
				}
				sort.Strings(got)
				return got
			}
			var got []string
			require.Eventually(t, func() bool { got = tombstones(); return len(got) == len(keys) }, 30*time.Second, 50*time.Millisecond,
				"removed events: %v\n%s", &got, in.log)
			for i, k := range keys {
				assert.Contains(t, tombstones()[i], "inbox/"+k)
			}
			// The same key written and moved again is deleted again: a
			// second removed event, not a repeat of the first.
			cli(t, dir, "publish", "files", `{"key": "a.json", "version": 2}`)
			require.Eventually(t, func() bool { got = tombstones(); return len(got) == len(keys)+1 }, 30*time.Second, 50*time.Millisecond,
				"removed events: %v\n%s", &got, in.log)
			if store != nil {
				for _, k := range keys {
					data, _, err := store.ReadAll(context.Background(), "archive", "moved/"+k, 0)
					require.NoError(t, err)
					if k != "a.json" {
						assert.JSONEq(t, fmt.Sprintf(`{"key": %q}`, k), string(data))
					}
					_, err = store.Stat(context.Background(), "inbox", k)
					assert.ErrorIs(t, err, storage.ErrNotFound, "moved away")
				}
			}

			cli(t, dir, "publish", "inventory", `{}`)
			require.Eventually(t, func() bool {
				return strings.Contains(cli(t, dir, "runs", "--flow", "inventory", "--json"), `"status":"succeeded"`)
			}, 20*time.Second, 50*time.Millisecond, "inventory did not run:\n%s", in.log)
			// The listing went into the payload, and out as one message per object.
			inv := parseTailed(t, cli(t, dir, "tail", "--from-beginning", "-n", "1", "--json", "inventory.out"))
			var listed struct{ Objects []struct{ Key string } }
			require.NoError(t, json.Unmarshal(inv[0].Payload, &listed))
			var listedKeys, fanned []string
			for _, o := range listed.Objects {
				listedKeys = append(listedKeys, o.Key)
			}
			for _, r := range parseTailed(t, cli(t, dir, "tail", "--from-beginning", "-n", "3", "--json", "archived")) {
				var o struct{ Key string }
				require.NoError(t, json.Unmarshal(r.Payload, &o))
				fanned = append(fanned, o.Key)
			}
			want := []string{"moved/a.json", "moved/b.json", "moved/sub/c.json"}
			assert.Equal(t, want, listedKeys)
			assert.Equal(t, want, fanned)
			assert.Len(t, tombstones(), len(keys)+1, "no other removal")
		})
	}
}

const presignFlows = `
name: thumbnail-link
on:
  http: {path: "/thumbnails/{key}", methods: [GET]}
steps:
  - id: link
    node: storage.presign
    with: {bucket: thumbnails, key: "{{ request.params.key }}", expires: 5m}
  - node: respond
    with: {status: 307, headers: {Location: "{{ steps.link.url }}"}, body: none}
---
name: upload-link
on:
  http: {path: "/uploads/{key}", methods: [POST]}
steps:
  - id: link
    node: storage.presign
    with: {bucket: uploads, key: "{{ request.params.key }}", method: PUT, expires: 1m}
  - node: transform
    with: {payload: steps.link}
`

// TestPresignOverHTTP serves presigned URLs from http flows on MinIO: a
// GET redirected to a thumbnail, a PUT URL a client uploads with. On
// folder storage the same flows are refused before anything starts.
func TestPresignOverHTTP(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "flows.yaml"), []byte(presignFlows), 0o644))

	cmd := exec.Command(sluiceBin, "run", "--listen", freeAddr(t), "flows.yaml")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "%s", out)
	assert.Equal(t, 2, ee.ExitCode())
	assert.Contains(t, string(out), "flows.yaml:6:5: steps[0] (storage.presign): presigned URLs need s3:// storage")
	assert.Contains(t, string(out), "flows.yaml:16:5: steps[0] (storage.presign)")

	if testing.Short() {
		t.Skip("starts MinIO")
	}
	srv := miniotest.Start(t)
	t.Setenv("SLUICE_STORAGE", srv.URL())
	store, err := storage.Open(context.Background(), srv.URL())
	require.NoError(t, err)
	ctx := context.Background()
	for _, b := range []string{"thumbnails", "uploads"} {
		require.NoError(t, store.EnsureBucket(ctx, b))
	}
	_, err = store.PutBytes(ctx, "thumbnails", "cat.jpg", []byte("a small cat"), storage.PutOptions{})
	require.NoError(t, err)
	in := run(t, dir, "flows.yaml")

	// The client follows the redirect to MinIO, without credentials.
	resp, err := http.Get("http://" + in.addr + "/thumbnails/cat.jpg")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, "%s\n%s", body, in.log)
	assert.Equal(t, "a small cat", string(body))
	assert.Equal(t, srv.Endpoint, resp.Request.URL.Host, "served by MinIO itself")

	resp, err = http.Post("http://"+in.addr+"/uploads/note.txt", "", nil)
	require.NoError(t, err)
	var link struct {
		URL, Method string
		ExpiresAt   string `json:"expires_at"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&link))
	resp.Body.Close()
	assert.Equal(t, "PUT", link.Method)
	exp, err := time.Parse(time.RFC3339, link.ExpiresAt)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Minute), exp, 30*time.Second)
	req, err := http.NewRequest(http.MethodPut, link.URL, strings.NewReader("uploaded without keys"))
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	data, _, err := store.ReadAll(ctx, "uploads", "note.txt", 0)
	require.NoError(t, err)
	assert.Equal(t, "uploaded without keys", string(data))
}
