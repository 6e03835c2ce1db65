package examples_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAPI drives examples/api as a client would: uploads (multipart and
// raw), metadata, thumbnails, wrong keys, oversized and non-image bodies,
// concurrent requests.
func TestAPI(t *testing.T) {
	t.Setenv("SLUICE_API_KEYS", "key-one,key-two")
	t.Setenv("MAX_UPLOAD", "2000000")
	dir := t.TempDir()
	flows, err := filepath.Abs("api")
	require.NoError(t, err)
	in := run(t, dir, flows)
	base := "http://" + in.addr

	do := func(method, path string, body io.Reader, ctype, key string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, body)
		require.NoError(t, err)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, data
	}
	upload := func(name string, data []byte, key string) (*http.Response, map[string]any) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, err := mw.CreateFormFile("image", name)
		require.NoError(t, err)
		_, _ = fw.Write(data)
		require.NoError(t, mw.Close())
		resp, body := do("POST", "/images", &buf, mw.FormDataContentType(), key)
		var out map[string]any
		_ = json.Unmarshal(body, &out)
		return resp, out
	}
	var jpg bytes.Buffer
	photoBytes(t, &jpg, 1024, 768)

	resp, out := upload("photo.jpg", jpg.Bytes(), "key-two")
	require.Equal(t, 201, resp.StatusCode, "%v", out)
	id := out["id"].(string)
	assert.Equal(t, "/images/"+id, resp.Header.Get("Location"))
	assert.Equal(t, "/images/"+id+"/thumbnail", out["thumbnail"])

	resp, body := do("GET", "/images/"+id, nil, "", "key-one")
	require.Equal(t, 200, resp.StatusCode)
	var meta map[string]any
	require.NoError(t, json.Unmarshal(body, &meta))
	assert.Equal(t, []any{1024.0, 768.0, 256.0, 192.0}, []any{meta["width"], meta["height"], meta["thumbnail_width"], meta["thumbnail_height"]})

	resp, body = do("GET", "/images/"+id+"/thumbnail", nil, "", "key-one")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "image/jpeg", resp.Header.Get("Content-Type"))
	cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
	require.NoError(t, err)
	assert.Equal(t, "jpeg", format)
	assert.Equal(t, [2]int{256, 192}, [2]int{cfg.Width, cfg.Height})

	// A raw body works too.
	resp, body = do("POST", "/images", bytes.NewReader(jpg.Bytes()), "image/jpeg", "key-one")
	require.Equal(t, 201, resp.StatusCode, "%s", body)

	// What a careless or hostile client gets.
	resp, _ = do("GET", "/images/"+id, nil, "", "")
	assert.Equal(t, 401, resp.StatusCode, "no key")
	resp, _ = do("GET", "/images/"+id, nil, "", "key-three")
	assert.Equal(t, 401, resp.StatusCode, "wrong key")
	resp, body = do("GET", "/images/nope", nil, "", "key-one")
	assert.Equal(t, 404, resp.StatusCode)
	assert.Contains(t, string(body), "no image nope")
	resp, _ = do("GET", "/images/nope/thumbnail", nil, "", "key-one")
	assert.Equal(t, 404, resp.StatusCode)
	resp, out = upload("notes.jpg", []byte("just text"), "key-one")
	assert.Equal(t, 422, resp.StatusCode)
	assert.Contains(t, out["error"], "not a supported image")
	resp, out = upload("huge.jpg", bytes.Repeat([]byte{1}, 3_000_000), "key-one")
	assert.Equal(t, 413, resp.StatusCode)
	assert.Contains(t, out["error"], "over the limit")

	// Concurrent uploads: each its own id, each its own thumbnail.
	var wg sync.WaitGroup
	ids := make(chan string, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, out := upload(fmt.Sprintf("c%d.jpg", i), jpg.Bytes(), "key-one")
			if assert.Equal(t, 201, resp.StatusCode) {
				ids <- out["id"].(string)
			}
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
		resp, _ := do("GET", "/images/"+id+"/thumbnail", nil, "", "key-two")
		assert.Equal(t, 200, resp.StatusCode)
	}
	assert.Len(t, seen, 8)

	// Every upload the flow ran is a run with its status code: 10 created,
	// 1 refused as not an image (the 413 never reached the flow).
	require.Eventually(t, func() bool {
		runs := cli(t, dir, "runs", "--flow", "images-upload", "--json", "--limit", "100")
		return strings.Count(runs, `"http_status":201`) == 10 && strings.Count(runs, `"http_status":422`) == 1
	}, 10*time.Second, 50*time.Millisecond)
}
