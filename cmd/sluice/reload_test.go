package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFlowWatcherSeesEditorSaves drives a real fsnotify watcher over a
// folder of flows and a flow named on its own: each kind of save ends in
// one debounced change.
func TestFlowWatcherSeesEditorSaves(t *testing.T) {
	dir := t.TempDir()
	flowsDir := filepath.Join(dir, "flows")
	single := filepath.Join(dir, "single", "one.yaml")
	require.NoError(t, os.MkdirAll(flowsDir, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Dir(single), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(flowsDir, "a.yaml"), []byte("a"), 0o644))
	require.NoError(t, os.WriteFile(single, []byte("one"), 0o644))

	w, err := newFlowWatcher([]string{flowsDir, single}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer w.close()
	go w.run(t.Context())

	changed := func(what string) {
		t.Helper()
		select {
		case <-w.changes:
		case <-time.After(10 * time.Second):
			t.Fatalf("no change reported after %s", what)
		}
	}
	write := func(path, body string) {
		t.Helper()
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	}

	write(filepath.Join(flowsDir, "a.yaml"), "a2")
	changed("an in-place write")

	tmp := filepath.Join(flowsDir, ".a.yaml.swp")
	write(tmp, "a3")
	require.NoError(t, os.Rename(tmp, filepath.Join(flowsDir, "a.yaml")))
	changed("a write-then-rename save")

	sub := filepath.Join(flowsDir, "more")
	require.NoError(t, os.Mkdir(sub, 0o755))
	changed("a new folder")
	write(filepath.Join(sub, "b.yml"), "b")
	changed("a file in the new folder")

	require.NoError(t, os.Remove(filepath.Join(sub, "b.yml")))
	changed("a removed flow file")

	// The named file's folder is watched for that file only: a burst of
	// other files and the named file's save make one change.
	for i := range 5 {
		write(filepath.Join(filepath.Dir(single), "other.yaml"), string(rune('a'+i)))
	}
	tmp = filepath.Join(filepath.Dir(single), "one.yaml.tmp")
	write(tmp, "one2")
	require.NoError(t, os.Rename(tmp, single))
	changed("the named file's save")
}
