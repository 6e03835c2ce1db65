package storage

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Copier is implemented by drivers that copy objects without passing
// their content through Sluice (S3's server-side copy). Store.Copy falls
// back to a read and a write for drivers without it. Arguments have been
// validated; the source and the destination differ.
type Copier interface {
	// Copy writes the content and content type of srcBucket/srcKey to
	// dstBucket/dstKey, replacing any object there, and returns the
	// destination's description.
	Copy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (ObjectInfo, error)
}

// Presigner is implemented by drivers that can sign URLs granting anyone
// holding them one operation on one object for a while, without
// credentials (S3's presigned URLs). Folder and in-memory storage cannot:
// nothing serves their objects over HTTP.
type Presigner interface {
	// Presign returns a URL allowing method (http.MethodGet or
	// http.MethodPut) on bucket/key until expiry has passed.
	Presign(ctx context.Context, method, bucket, key string, expiry time.Duration) (string, error)
}

// Presigned URL lifetimes S3 accepts.
const (
	MinPresignExpiry = time.Second
	MaxPresignExpiry = 7 * 24 * time.Hour
)

// Copy copies srcBucket/srcKey to dstBucket/dstKey (content and content
// type), replacing any object there, and returns the destination's
// description. It uses the driver's Copier when it has one, else reads the
// source and writes the destination, which drivers write atomically.
// Copying an object onto itself changes nothing.
func (s *Store) Copy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (ObjectInfo, error) {
	if err := check(srcBucket, srcKey); err != nil {
		return ObjectInfo{}, err
	}
	if err := check(dstBucket, dstKey); err != nil {
		return ObjectInfo{}, err
	}
	if srcBucket == dstBucket && srcKey == dstKey {
		return s.d.Stat(ctx, srcBucket, srcKey)
	}
	if c, ok := s.d.(Copier); ok {
		return c.Copy(ctx, srcBucket, srcKey, dstBucket, dstKey)
	}
	r, info, err := s.d.NewReader(ctx, srcBucket, srcKey)
	if err != nil {
		return ObjectInfo{}, err
	}
	defer r.Close()
	out, err := s.d.Put(ctx, dstBucket, dstKey, r, PutOptions{ContentType: info.ContentType})
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("copy %s/%s to %s/%s: %w", srcBucket, srcKey, dstBucket, dstKey, err)
	}
	return out, nil
}

// CanPresign reports whether the driver makes presigned URLs.
func (s *Store) CanPresign() bool { _, ok := s.d.(Presigner); return ok }

// Presign returns a URL allowing method (GET or PUT) on bucket/key, without
// credentials, until expiry (1s to 7 days) has passed. Drivers that cannot
// make one fail with ErrNotSupported.
func (s *Store) Presign(ctx context.Context, method, bucket, key string, expiry time.Duration) (string, error) {
	if err := check(bucket, key); err != nil {
		return "", err
	}
	if method != http.MethodGet && method != http.MethodPut {
		return "", fmt.Errorf("presign %s/%s: method must be GET or PUT, not %q", bucket, key, method)
	}
	if expiry < MinPresignExpiry || expiry > MaxPresignExpiry {
		return "", fmt.Errorf("presign %s/%s: expiry %s is outside [%s, %s]", bucket, key, expiry, MinPresignExpiry, MaxPresignExpiry)
	}
	p, ok := s.d.(Presigner)
	if !ok {
		return "", fmt.Errorf("presign %s/%s: presigned URLs need s3:// storage: %w", bucket, key, ErrNotSupported)
	}
	return p.Presign(ctx, method, bucket, key, expiry)
}
