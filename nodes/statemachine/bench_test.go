package statemachine_test

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/pgtest"
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

// BenchmarkTransitionsPostgres reports state transitions/s through
// state.transition on PostgreSQL (--state postgres://…) over 1,000
// entities, one event at a time, 16 and 64 at once (as lanes of streams
// deliver them: each lane its own entities, in order; concurrent ones
// share commits, see machines.Postgres), durable (synchronous_commit on,
// the default: a WAL flush per commit) and with synchronous_commit=off,
// side by side with the SQLite store (the default, machines.db) in the
// same rounds: three alternating rounds, medians.
func BenchmarkTransitionsPostgres(b *testing.B) {
	pgtest.Server(b) // skips without PostgreSQL
	n := max(b.N, 5000)
	cases := []struct {
		name    string
		workers int
		params  string // "": SQLite
	}{
		{"sqlite_serial", 1, ""},
		{"serial", 1, "-"},
		{"sqlite_concurrent", 16, ""},
		{"concurrent", 16, "-"},
		{"concurrent64", 64, "-"},
		{"serial_async", 1, "&synchronous_commit=off"},
		{"concurrent_async", 16, "&synchronous_commit=off"},
	}
	rates := map[string][]float64{}
	for range 3 {
		for _, c := range cases {
			deps := nodes.Deps{StateDir: b.TempDir()}
			if c.params != "" {
				deps.State = pgtest.URL(b) + strings.TrimPrefix(c.params, "-")
			}
			rates[c.name] = append(rates[c.name], measureTransitionsOn(b, n, c.workers, deps))
		}
	}
	for _, c := range cases {
		b.ReportMetric(median(rates[c.name]), c.name+"_transitions/s")
	}
	b.ReportMetric(0, "ns/op")
}

func measureTransitionsOn(b *testing.B, n, workers int, deps nodes.Deps) float64 {
	node, err := nodestest.Build("state.transition", flipMachine, deps)
	require.NoError(b, err)
	require.NoError(b, node.(nodes.Starter).Start(b.Context()))
	defer node.(nodes.Closer).Close()
	envs := make(chan *nodes.Envelope, n)
	for i := range n {
		env := nodestest.Envelope(nil, 0, "t")
		env.Event.ID = fmt.Sprint("m-", i)
		// Each worker's events touch its own entities, in order, as
		// partitions keyed by entity deliver them.
		env.Payload = map[string]any{"id": fmt.Sprint("e-", i%1000)}
		envs <- env
	}
	close(envs)
	byWorker := make([]chan *nodes.Envelope, workers)
	for w := range byWorker {
		byWorker[w] = make(chan *nodes.Envelope, n)
	}
	i := 0
	for env := range envs {
		byWorker[(i%1000)%workers] <- env
		i++
	}
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		close(byWorker[w])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for env := range byWorker[w] {
				if err := node.Process(b.Context(), env); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}
