package storage_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/storage"
	"github.com/sluicehq/sluice/storage/storagetest"
)

func TestMemConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) *storage.Store { return storage.NewStore(storage.NewMem()) })
}

func TestFSConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		d, err := storage.NewFS(t.TempDir(), 50*time.Millisecond)
		require.NoError(t, err)
		return storage.NewStore(d)
	})
}

func TestOpenByURL(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open(t.Context(), "fs://"+dir+"?settle=10ms")
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = storage.Open(t.Context(), "nope://x")
	require.ErrorContains(t, err, `unknown scheme "nope"`)
	_, err = storage.Open(t.Context(), "fs://"+dir+"?settle=-1s")
	require.ErrorContains(t, err, "settle must be a positive duration")
}

// hookDriver is a driver offering a webhook, as the s3 driver does.
type hookDriver struct {
	storage.Driver
	h http.Handler
}

func (d hookDriver) WebhookHandler() http.Handler { return d.h }

func TestStoreAs(t *testing.T) {
	mem := storage.NewStore(storage.NewMem())
	var wr storage.WebhookReceiver
	assert.False(t, mem.As(&wr), "mem:// takes no webhooks")
	assert.Nil(t, wr)
	var w storage.Watcher
	assert.True(t, mem.As(&w), "mem:// watches itself")
	var m *storage.Mem
	assert.True(t, mem.As(&m), "a concrete driver type")
	assert.False(t, mem.As(nil))
	assert.False(t, mem.As(wr), "not a pointer")
	assert.False(t, mem.As((*storage.WebhookReceiver)(nil)), "a nil pointer")

	h := http.NotFoundHandler()
	hooked := storage.NewStore(hookDriver{Driver: storage.NewMem(), h: h})
	require.True(t, hooked.As(&wr))
	rec := httptest.NewRecorder()
	wr.WebhookHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/hooks/s3", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code, "the driver's own handler")
}

// asDriver exposes a value other than itself through its own As method.
type asDriver struct{ storage.Driver }

func (asDriver) As(target any) bool {
	p, ok := target.(*string)
	if ok {
		*p = "vendor client"
	}
	return ok
}

func TestStoreAsAsksTheDriverFirst(t *testing.T) {
	s := storage.NewStore(asDriver{storage.NewMem()})
	var client string
	require.True(t, s.As(&client))
	assert.Equal(t, "vendor client", client)
}
