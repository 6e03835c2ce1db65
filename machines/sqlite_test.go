package machines_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/machines"
	"github.com/sluicehq/sluice/machines/machinestest"
)

func TestSQLiteStore(t *testing.T) {
	machinestest.Run(t, func(t *testing.T) machines.Store {
		s, err := machines.OpenSQLite(filepath.Join(t.TempDir(), "machines.db"))
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	})
}
