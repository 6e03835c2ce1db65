package machines_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/internal/schema"
	"github.com/sluicehq/sluice/machines"
	"github.com/sluicehq/sluice/machines/machinestest"
)

func TestPostgresStore(t *testing.T) {
	machinestest.Run(t, func(t *testing.T) machines.Store {
		s, err := machines.Open(t.Context(), pgtest.URL(t))
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestPostgresSharedByTwoStores: two stores on one database (two
// processes) see one entity.
func TestPostgresSharedByTwoStores(t *testing.T) {
	url := pgtest.URL(t)
	a, err := machines.OpenPostgres(t.Context(), url)
	require.NoError(t, err)
	defer a.Close()
	b, err := machines.OpenPostgres(t.Context(), url)
	require.NoError(t, err)
	defer b.Close()
	_, _, err = a.Apply(t.Context(), "order", "o-1", 0, machines.Transition{Event: "create", To: "created", Input: "m1"})
	require.NoError(t, err)
	_, _, err = b.Apply(t.Context(), "order", "o-1", 0, machines.Transition{Event: "create", To: "created", Input: "m2"})
	require.ErrorIs(t, err, machines.ErrConflict)
	e, _, err := b.Apply(t.Context(), "order", "o-1", 1, machines.Transition{Event: "pay", From: "created", To: "paid", Input: "m3"})
	require.NoError(t, err)
	got, err := a.Get(t.Context(), "order", "o-1")
	require.NoError(t, err)
	require.Equal(t, e, got)
}

func TestPostgresNewerSchemaRefused(t *testing.T) {
	url := pgtest.URL(t)
	s, err := machines.OpenPostgres(t.Context(), url)
	require.NoError(t, err)
	_, err = s.DB().ExecContext(t.Context(), `UPDATE schema_version SET version = 99 WHERE component = 'machines'`)
	require.NoError(t, err)
	s.Close()
	_, err = machines.OpenPostgres(t.Context(), url)
	require.ErrorIs(t, err, schema.ErrNewer)
}
