package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/storage"
)

// The command links every driver: their schemes are registered.
func TestDriversAreLinked(t *testing.T) {
	assert.Equal(t, []string{"amqp", "amqps", "kafka", "mem", "sqlite"}, brokers.Schemes())
	assert.Equal(t, []string{"fs", "mem", "s3"}, storage.Schemes())
}

// `sluice run` serves /hooks/s3 when the storage driver takes webhooks.
func TestWebhooksOfTheStore(t *testing.T) {
	s3, err := storage.Open(t.Context(), "s3://key:secret@127.0.0.1:1?secure=false")
	require.NoError(t, err)
	defer s3.Close()
	h := webhooks(s3)
	require.NotNil(t, h)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/hooks/s3", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code, "the s3 driver's receiver answers")

	fs, err := storage.Open(t.Context(), "fs://"+t.TempDir())
	require.NoError(t, err)
	defer fs.Close()
	assert.Nil(t, webhooks(fs), "folders watch themselves")
}
