package s3

import (
	"context"
	"fmt"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sluicehq/sluice/storage"
)

// Copy implements storage.Copier with S3's server-side copy: the content
// does not pass through Sluice. Content type and user metadata are copied
// from the source. A single copy request takes objects up to 5 GiB.
func (d *Driver) Copy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (storage.ObjectInfo, error) {
	// Check the source first so a missing source is reported as such, not
	// as whatever the copy request's error says about the destination.
	if _, err := d.Stat(ctx, srcBucket, srcKey); err != nil {
		return storage.ObjectInfo{}, err
	}
	_, err := d.c.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: dstBucket, Object: dstKey},
		minio.CopySrcOptions{Bucket: srcBucket, Object: srcKey})
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("copy %s/%s: %w", srcBucket, srcKey, mapErr(dstBucket, dstKey, err))
	}
	return d.Stat(ctx, dstBucket, dstKey)
}

// Presign implements storage.Presigner: a URL signed with the driver's
// credentials, for the endpoint the storage URL names (clients must reach
// that host: a presigned URL cannot be moved to another host name).
func (d *Driver) Presign(ctx context.Context, method, bucket, key string, expiry time.Duration) (string, error) {
	u, err := d.c.Presign(ctx, method, bucket, key, expiry, nil)
	if err != nil {
		return "", fmt.Errorf("presign %s %s/%s: %w", method, bucket, key, mapErr(bucket, key, err))
	}
	return u.String(), nil
}

var (
	_ storage.Copier    = (*Driver)(nil)
	_ storage.Presigner = (*Driver)(nil)
)
