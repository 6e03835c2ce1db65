package nodes_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sluicehq/sluice/nodes"
)

func TestRetryAfter(t *testing.T) {
	base := errors.New("503 Service Unavailable")
	err := fmt.Errorf("step: %w", nodes.RetryAfter(base, 3*time.Second))
	d, ok := nodes.RetryAfterOf(err)
	assert.True(t, ok)
	assert.Equal(t, 3*time.Second, d)
	assert.ErrorIs(t, err, base)
	assert.Equal(t, "step: 503 Service Unavailable", err.Error())

	assert.NoError(t, nodes.RetryAfter(nil, time.Second))
	perm := nodes.Permanent(base)
	assert.Equal(t, perm, nodes.RetryAfter(perm, time.Second), "a permanent error is never retried")
	_, ok = nodes.RetryAfterOf(nodes.RetryAfter(base, 0))
	assert.False(t, ok)
	_, ok = nodes.RetryAfterOf(base)
	assert.False(t, ok)
}

func TestAttemptAndStep(t *testing.T) {
	d := nodes.NewDelivery(nil, 0)
	env := d.Envelope()
	assert.Zero(t, env.Attempt())
	d.SetStep("notify")
	d.SetAttempt(2)
	assert.Equal(t, 2, env.Attempt())
	assert.Equal(t, "notify", env.StepID())
}
