package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/machines"
	"github.com/sluicehq/sluice/state"
)

// TestStateOnPostgres: runs, usage, dead letters and state machines
// written to a PostgreSQL state database are what `sluice runs|usage|dlq|
// state` show with --state, from any home folder.
func TestStateOnPostgres(t *testing.T) {
	url := pgtest.URL(t)
	ctx := context.Background()
	st, err := state.OpenURL(ctx, url)
	require.NoError(t, err)
	_, err = st.Complete(ctx, state.Run{ID: "r-1", Flow: "orders", Input: "m-1", Status: state.StatusSucceeded, Started: time.Now(), Duration: time.Second})
	require.NoError(t, err)
	require.NoError(t, st.RecordDeadLetter(ctx, state.DeadLetter{ID: "d-1", Flow: "orders", Error: "order o-1 is new", Failed: time.Now(),
		SourceTopic: "orders", SourceID: "m-2", Topic: "orders.dlq"}))
	require.NoError(t, st.Close())
	ms, err := machines.Open(ctx, url)
	require.NoError(t, err)
	_, _, err = ms.Apply(ctx, "order", "o-1", 0, machines.Transition{Event: "create", To: "created", Input: "m-1",
		Timers: []machines.Timer{{Event: "expire", Topic: "orders", Due: time.Now().Add(time.Hour)}}})
	require.NoError(t, err)
	require.NoError(t, ms.Close())

	home := t.TempDir() // empty: everything comes from --state
	out, err := sluice(t, home, "", "--state", url, "runs", "--flow", "orders", "--json")
	require.NoError(t, err)
	assert.Contains(t, out, "r-1")
	out, err = sluice(t, home, "", "--state", url, "usage", "--flow", "orders", "--json")
	require.NoError(t, err)
	assert.Contains(t, out, `"calls":1`)
	out, err = sluice(t, home, "", "--state", url, "dlq", "list", "--flow", "orders")
	require.NoError(t, err)
	assert.Contains(t, out, "order o-1 is new")
	out, err = sluice(t, home, "", "--state", url, "state", "get", "order", "o-1")
	require.NoError(t, err)
	assert.Contains(t, out, "order o-1: created (version 1")
	assert.Regexp(t, `(?m)^1\s+created\s+expire\s+\S+ \S+\s+pending$`, out, "its timer")
}

func TestBadStateURL(t *testing.T) {
	_, err := sluice(t, t.TempDir(), "", "--state", "mysql://x", "runs")
	assert.ErrorContains(t, err, `state URL "mysql://x": want sqlite://PATH or postgres://`)
	_, err = sluice(t, t.TempDir(), "", "--state", "postgres://nobody:hunter2@127.0.0.1:1/db?connect_timeout=2", "runs")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2", "no password in messages")
}
