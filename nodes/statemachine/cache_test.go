package statemachine_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/nodes"
)

// A node remembers the entities it moved and decides their next event
// without reading them. Two nodes on one database (two processes) show
// that a remembered state out of date never decides wrongly: the node
// reads the entity again.
func TestRememberedStateOutOfDateSQLite(t *testing.T) {
	db := filepath.Join(t.TempDir(), "shared.db")
	testRememberedStateOutOfDate(t, nodes.Deps{StateDir: t.TempDir()}, "\ndatabase: "+db)
}

func TestRememberedStateOutOfDatePostgres(t *testing.T) {
	testRememberedStateOutOfDate(t, nodes.Deps{StateDir: t.TempDir(), State: pgtest.URL(t)}, "")
}

func testRememberedStateOutOfDate(t *testing.T, deps nodes.Deps, with string) {
	a, b := startWith(t, orderMachine+with, deps), startWith(t, orderMachine+with, deps)
	res, err := send(t, a, "m1", map[string]any{"id": "o-1", "type": "create"})
	require.NoError(t, err)
	require.Equal(t, true, res["applied"])
	res, err = send(t, b, "m2", map[string]any{"id": "o-1", "type": "pay", "amount": 5})
	require.NoError(t, err)
	require.Equal(t, int64(2), res["version"])

	// a remembers o-1 created, where ship is not allowed: it reads again.
	res, err = send(t, a, "m3", map[string]any{"id": "o-1", "type": "ship"})
	require.NoError(t, err, "decided on the stored state, not the remembered one")
	assert.Equal(t, []any{"paid", "shipped", int64(3), true}, []any{res["from"], res["to"], res["version"], res["applied"]})

	// b remembers o-1 paid (version 2), where cancel is allowed too: the
	// version it applies from conflicts, and it decides again.
	_, err = send(t, a, "m4", map[string]any{"id": "o-2", "type": "create"})
	require.NoError(t, err)
	_, err = send(t, b, "m5", map[string]any{"id": "o-2", "type": "pay", "amount": 1})
	require.NoError(t, err)
	_, err = send(t, a, "m6", map[string]any{"id": "o-2", "type": "cancel"})
	require.NoError(t, err, "a read o-2 again after its guess conflicted")
	res, err = send(t, b, "m7", map[string]any{"id": "o-2", "type": "cancel"})
	require.Error(t, err)
	assert.True(t, nodes.IsPermanent(err))
	assert.EqualError(t, err, `order o-2 is cancelled, a terminal state: event "cancel" not applied`)
	assert.Nil(t, res)

	// Redelivered after the entity moved on, decided on the remembered
	// state (cancel is allowed from paid and from created): applied once,
	// reported as the transition it caused.
	_, err = send(t, a, "m8", map[string]any{"id": "o-3", "type": "create"})
	require.NoError(t, err)
	_, err = send(t, a, "m9", map[string]any{"id": "o-3", "type": "pay", "amount": 1})
	require.NoError(t, err)
	res, err = send(t, a, "m8", map[string]any{"id": "o-3", "type": "create"})
	require.NoError(t, err)
	assert.Equal(t, []any{"new", "created", int64(1), false}, []any{res["from"], res["to"], res["version"], res["applied"]})

	// The same, where the event is allowed in the remembered state: the
	// store finds the input applied.
	f := startWith(t, flipMachine+with, deps)
	for _, id := range []string{"f1", "f2", "f1"} {
		res, err = send(t, f, id, map[string]any{"id": "s-1"})
		require.NoError(t, err)
	}
	assert.Equal(t, []any{"off", "on", int64(1), false}, []any{res["from"], res["to"], res["version"], res["applied"]})
}
