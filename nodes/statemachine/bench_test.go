package statemachine_test

import (
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/sqlitedb"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/nodestest"
)

const flipMachine = `
machine: switch
key: payload.id
event: '"flip"'
initial: off
transitions:
  - {event: flip, from: ["off"], to: "on"}
  - {event: flip, from: ["on"], to: "off"}
`

// BenchmarkTransitions reports state transitions/s through state.transition
// on its SQLite store (each a durable commit: WAL, synchronous=NORMAL, the
// store's default) over 1,000 entities, next to raw SQLite single-row
// UPDATE commits on a file with the same settings, in the same run: three
// alternating rounds, medians.
func BenchmarkTransitions(b *testing.B) {
	n := max(b.N, 5000)
	var node, raw []float64
	for round := 0; round < 3; round++ {
		node = append(node, measureTransitions(b, n))
		raw = append(raw, measureRawUpdates(b, n))
	}
	m, r := median(node), median(raw)
	b.ReportMetric(m, "transitions/s")
	b.ReportMetric(r, "raw_updates/s")
	b.ReportMetric(m/r, "ratio")
	b.ReportMetric(0, "ns/op")
}

func measureTransitions(b *testing.B, n int) float64 {
	node, err := nodestest.Build("state.transition", flipMachine, nodes.Deps{StateDir: b.TempDir()})
	require.NoError(b, err)
	require.NoError(b, node.(nodes.Starter).Start(b.Context()))
	defer node.(nodes.Closer).Close()
	envs := make([]*nodes.Envelope, n)
	for i := range envs {
		env := nodestest.Envelope(nil, 0, "t")
		env.Event.ID = fmt.Sprint("m-", i)
		env.Payload = map[string]any{"id": fmt.Sprint("e-", i%1000)}
		envs[i] = env
	}
	start := time.Now()
	for _, env := range envs {
		if err := node.Process(b.Context(), env); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

func measureRawUpdates(b *testing.B, n int) float64 {
	db, err := sqlitedb.Open(filepath.Join(b.TempDir(), "raw.db"), sqlitedb.SyncNormal)
	require.NoError(b, err)
	defer db.Close()
	_, err = db.Exec(`CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID`)
	require.NoError(b, err)
	for i := 0; i < 1000; i++ {
		_, err := db.Exec(`INSERT INTO t VALUES (?, 0)`, fmt.Sprint("e-", i))
		require.NoError(b, err)
	}
	st, err := db.Prepare(`UPDATE t SET v = v + 1 WHERE id = ?`)
	require.NoError(b, err)
	defer st.Close()
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := st.Exec(fmt.Sprint("e-", i%1000)); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
