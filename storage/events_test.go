package storage_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/storage"
)

func TestParseEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want []storage.ObjectEvent
	}{
		{"minio webhook, escaped key", `{"EventName":"s3:ObjectCreated:Put","Key":"uploads/my photo.jpg","Records":[{"eventVersion":"2.0","eventSource":"minio:s3","eventTime":"2026-11-25T10:00:00.123Z","eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},"object":{"key":"2026%2Fmy+photo.jpg","size":1234,"eTag":"abc123","contentType":"image/jpeg","sequencer":"1"}}}]}`,
			[]storage.ObjectEvent{{Name: "s3:ObjectCreated:Put", Bucket: "uploads", Key: "2026/my photo.jpg", Size: 1234, ETag: "abc123", ContentType: "image/jpeg",
				Time: time.Date(2026, 11, 25, 10, 0, 0, 123e6, time.UTC), Source: "minio"}}},
		{"aws record, multipart", `{"Records":[{"eventSource":"aws:s3","eventTime":"2026-11-25T10:00:00Z","eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"b"},"object":{"key":"big.bin","size":99,"eTag":"\"e-2\"","versionId":"v1"}}}]}`,
			[]storage.ObjectEvent{{Name: "s3:ObjectCreated:CompleteMultipartUpload", Bucket: "b", Key: "big.bin", Size: 99, ETag: "e-2", VersionID: "v1",
				Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Source: "s3"}}},
		{"minio webhook with user metadata", `{"Records":[{"eventSource":"minio:s3","eventTime":"2026-11-25T10:00:00Z","eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"t.jpg","size":5,"eTag":"e","userMetadata":{"X-Amz-Meta-Sluice-Run":"01RUN","content-type":"image/jpeg"}}}}]}`,
			[]storage.ObjectEvent{{Name: "s3:ObjectCreated:Put", Bucket: "b", Key: "t.jpg", Size: 5, ETag: "e",
				Time: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Source: "minio", Metadata: map[string]string{storage.MetaRun: "01RUN"}}}},
		{"aws test event", `{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}`, nil},
		{"removal", `{"Records":[{"eventSource":"minio:s3","eventName":"s3:ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"gone.txt"}}}]}`,
			[]storage.ObjectEvent{{Name: "s3:ObjectRemoved:Delete", Bucket: "b", Key: "gone.txt", Source: "minio"}}},
		{"removal with a sequencer: each deletion is distinct", `{"Records":[{"eventSource":"minio:s3","eventName":"s3:ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"gone.txt","sequencer":"187C2E0F1A2B"}}}]}`,
			[]storage.ObjectEvent{{Name: "s3:ObjectRemoved:Delete", Bucket: "b", Key: "gone.txt", ETag: "seq-187C2E0F1A2B", Source: "minio"}}},
		{"tencent cos", `{"Records":[{"cos":{"cosSchemaVersion":"1.0","cosBucket":{"name":"photos-1250000000","appid":"1250000000","region":"ap-guangzhou"},"cosObject":{"key":"/1250000000/photos/a/b.jpg","size":42,"meta":{"Content-Type":"image/jpeg","ETag":"\"ff\""},"vid":""}},"event":{"eventName":"cos:ObjectCreated:Put","eventTime":1764064800,"eventSource":"qcs::cos"}}]}`,
			[]storage.ObjectEvent{{Name: "s3:ObjectCreated:Put", Bucket: "photos-1250000000", Key: "a/b.jpg", Size: 42, ETag: "ff", ContentType: "image/jpeg",
				Time: time.Unix(1764064800, 0).UTC(), Source: "cos"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := storage.ParseEvents([]byte(tc.body))
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	_, err := storage.ParseEvents([]byte("not json"))
	assert.ErrorContains(t, err, "not JSON")
}

func TestNormalizeEventName(t *testing.T) {
	for in, want := range map[string]string{
		"ObjectCreated:Put":       "s3:ObjectCreated:Put",
		"s3:ObjectRemoved:Delete": "s3:ObjectRemoved:Delete",
		"cos:ObjectCreated:Post":  "s3:ObjectCreated:Post",
	} {
		assert.Equal(t, want, storage.NormalizeEventName(in), in)
	}
}
