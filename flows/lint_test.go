package flows_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/all"
)

var update = flag.Bool("update", false, "rewrite golden files")

const sep = "\n---------- expected ----------\n"

// TestLintGolden runs each testdata/lint/*.txt: a flow file, the separator,
// then the exact problems `sluice validate` prints (or "ok"). The flow is
// read as flow.yaml with SLUICE_TEST_BUCKET=images set.
func TestLintGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/lint/*.txt")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			input, want, found := strings.Cut(string(raw), sep)
			require.True(t, found, "golden file needs the separator")
			dir := t.TempDir()
			file := filepath.Join(dir, "flow.yaml")
			require.NoError(t, os.WriteFile(file, []byte(input), 0o644))
			l := flows.Loader{Lookup: func(n string) (string, bool) {
				if n == "SLUICE_TEST_BUCKET" {
					return "images", true
				}
				return "", false
			}}
			got := "ok\n"
			if _, err := l.Load(file); err != nil {
				var ps nodes.Problems
				require.True(t, errors.As(err, &ps), "want positioned problems, got %v", err)
				got = strings.ReplaceAll(ps.Error(), dir+string(filepath.Separator), "") + "\n"
			}
			if *update {
				require.NoError(t, os.WriteFile(path, []byte(input+sep+got), 0o644))
				return
			}
			require.Equal(t, want, got)
		})
	}
}
