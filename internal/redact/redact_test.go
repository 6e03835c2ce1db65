package redact_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sluicehq/sluice/internal/redact"
)

func TestURL(t *testing.T) {
	for raw, want := range map[string]string{
		"s3://KEY:SECRET@minio:9000?secure=false":             "s3://KEY:xxxxx@minio:9000?secure=false",
		"kafka://user:pa%40ss@k1:9092,k2:9092?sasl=PLAIN":     "kafka://user:xxxxx@k1:9092,k2:9092?sasl=PLAIN",
		"s3://minio:9000?access_key=AK&secret_key=SK&x=1":     "s3://minio:9000?access_key=xxxxx&secret_key=xxxxx&x=1",
		"sqlite:///var/lib/sluice/queue.db?sync=full":         "sqlite:///var/lib/sluice/queue.db?sync=full",
		"fs://.sluice/buckets":                                "fs://.sluice/buckets",
		"mem://":                                              "mem://",
		"http://user@host/path":                               "http://user@host/path",
		"kafka://u:SECRET@host:9092/%zz":                      "kafka://u:xxxxx@host:9092/%zz",
		"s3://K:SE CRET@host\x7f":                             "s3://K:xxxxx@host\x7f",
		"https://api/hook?token=T0K3N&Authorization=Bearer+x": "https://api/hook?Authorization=xxxxx&token=xxxxx",
	} {
		assert.Equal(t, want, redact.URL(raw), raw)
	}
}

func TestError(t *testing.T) {
	raw := "s3://KEY:SECRET@minio:9000"
	err := errors.New(`storage url "s3://KEY:SECRET@minio:9000": dial failed; SECRET again`)
	got := redact.Error(err, raw)
	assert.NotContains(t, got, "SECRET")
	assert.Contains(t, got, "s3://KEY:xxxxx@minio:9000")
	assert.Equal(t, "", redact.Error(nil, raw))
}
