// Package s3 is the storage driver for S3-compatible stores (MinIO, AWS S3,
// Tencent COS, ...) through minio-go. Importing it registers the "s3" URL
// scheme:
//
//	s3://HOST[:PORT]?secure=true&region=us-east-1&path_style=true
//
// Credentials come from the URL's user info, else SLUICE_S3_ACCESS_KEY and
// SLUICE_S3_SECRET_KEY, else AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
//
// Bucket triggers: notifications posted to the driver's Receiver (served by
// `sluice run` at /hooks/s3, bearer token SLUICE_WEBHOOK_TOKEN), plus a
// listing at start and every reconcile interval (&reconcile=5m; 0 turns it
// off). &notify_arn=arn:minio:sqs::SLUICE:webhook makes Sluice add the
// bucket's notification rule itself. &notify=listen uses MinIO's listen
// API instead of the webhook: nothing to configure on the server, but not
// durable (events while Sluice is not listening are only found by the
// reconcile listing).
// minio-go stays inside this package: callers see storage's portable types
// and errors only.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sluicehq/sluice/storage"
)

func init() { storage.Register("s3", open) }

// Driver implements storage.Driver on an S3 API.
type Driver struct {
	c         *minio.Client
	region    string
	receiver  *Receiver
	notifyARN string
	reconcile time.Duration
	listen    bool // notify=listen: MinIO's listen API instead of the webhook
}

func open(_ context.Context, u *url.URL) (storage.Driver, error) {
	if u.Host == "" {
		return nil, errors.New("s3 url needs an endpoint, e.g. s3://localhost:9000?secure=false")
	}
	q := u.Query()
	secure := true
	if s := q.Get("secure"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("secure must be true or false, not %q", s)
		}
		secure = b
	}
	access, secret := firstEnv("SLUICE_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID"), firstEnv("SLUICE_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
	if u.User != nil {
		access = u.User.Username()
		if p, ok := u.User.Password(); ok {
			secret = p
		}
	}
	lookup := minio.BucketLookupAuto
	if s := q.Get("path_style"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("path_style must be true or false, not %q", s)
		}
		if b {
			lookup = minio.BucketLookupPath
		} else {
			lookup = minio.BucketLookupDNS
		}
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds: credentials.NewStaticV4(access, secret, ""), Secure: secure,
		Region: q.Get("region"), BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	d := &Driver{c: c, region: q.Get("region"), receiver: NewReceiver(os.Getenv("SLUICE_WEBHOOK_TOKEN")),
		notifyARN: q.Get("notify_arn"), reconcile: 5 * time.Minute}
	d.receiver.confirm = d.confirmEvent
	switch q.Get("notify") {
	case "", "webhook":
	case "listen":
		d.listen = true
	default:
		return nil, fmt.Errorf("notify must be webhook or listen, not %q", q.Get("notify"))
	}
	if s := q.Get("reconcile"); s != "" {
		r, err := time.ParseDuration(s)
		if err != nil || r < 0 {
			return nil, fmt.Errorf("reconcile must be a duration such as 5m (0 for never), not %q", s)
		}
		d.reconcile = r
	}
	return d, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// Client returns the minio-go client, for bucket notification setup.
func (d *Driver) Client() *minio.Client { return d.c }

// mapErr turns S3 error codes into storage's portable errors.
func mapErr(bucket, key string, err error) error {
	if err == nil {
		return nil
	}
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("%s/%s: %w", bucket, key, storage.ErrNotFound)
	case "NoSuchBucket":
		return fmt.Errorf("%s: %w", bucket, storage.ErrBucketNotFound)
	case "InvalidBucketName":
		return fmt.Errorf("%s: %w", bucket, storage.ErrInvalidBucket)
	case "KeyTooLongError", "XMinioInvalidObjectName":
		return fmt.Errorf("%s/%s: %w", bucket, key, storage.ErrInvalidKey)
	}
	return fmt.Errorf("%s/%s: %w", bucket, key, err)
}

func info(bucket string, o minio.ObjectInfo) storage.ObjectInfo {
	return storage.ObjectInfo{
		Bucket: bucket, Key: o.Key, Size: o.Size, ETag: o.ETag,
		ContentType: o.ContentType, Modified: o.LastModified.UTC(),
	}
}

func (d *Driver) NewReader(ctx context.Context, bucket, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	o, err := d.c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, storage.ObjectInfo{}, mapErr(bucket, key, err)
	}
	st, err := o.Stat() // the request is made here; so are its errors
	if err != nil {
		o.Close()
		return nil, storage.ObjectInfo{}, mapErr(bucket, key, err)
	}
	return o, info(bucket, st), nil
}

func (d *Driver) Put(ctx context.Context, bucket, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	size := int64(-1) // unknown: streamed in parts
	if l, ok := r.(interface{ Len() int }); ok {
		size = int64(l.Len())
	}
	if size < 0 {
		// Read small bodies whole so they go in one PUT with a known size;
		// larger ones stream as multipart uploads.
		buf, err := io.ReadAll(io.LimitReader(r, 16<<20))
		if err != nil {
			return storage.ObjectInfo{}, err
		}
		if len(buf) < 16<<20 {
			r, size = bytes.NewReader(buf), int64(len(buf))
		} else {
			r = io.MultiReader(bytes.NewReader(buf), r)
		}
	}
	ct := opts.ContentType
	if ct == "" {
		ct = storage.ContentType(key)
	}
	up, err := d.c.PutObject(ctx, bucket, key, r, size, minio.PutObjectOptions{ContentType: ct, UserMetadata: opts.Metadata})
	if err != nil {
		return storage.ObjectInfo{}, mapErr(bucket, key, err)
	}
	return d.Stat(ctx, bucket, up.Key)
}

func (d *Driver) Stat(ctx context.Context, bucket, key string) (storage.ObjectInfo, error) {
	st, err := d.c.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return storage.ObjectInfo{}, mapErr(bucket, key, err)
	}
	return info(bucket, st), nil
}

func (d *Driver) Delete(ctx context.Context, bucket, key string) error {
	return mapErr(bucket, key, d.c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}))
}

func (d *Driver) List(ctx context.Context, bucket, prefix string, fn func(storage.ObjectInfo) error) error {
	ok, err := d.c.BucketExists(ctx, bucket)
	if err != nil {
		return mapErr(bucket, "", err)
	}
	if !ok {
		return fmt.Errorf("%s: %w", bucket, storage.ErrBucketNotFound)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn stops early
	for o := range d.c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return mapErr(bucket, prefix, o.Err)
		}
		if err := fn(info(bucket, o)); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (d *Driver) EnsureBucket(ctx context.Context, bucket string) error {
	ok, err := d.c.BucketExists(ctx, bucket)
	if err != nil {
		return mapErr(bucket, "", err)
	}
	if ok {
		return nil
	}
	err = d.c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: d.region})
	if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
		return nil
	}
	return mapErr(bucket, "", err)
}

func (d *Driver) Close() error { return nil }

var _ storage.Driver = (*Driver)(nil)

// userMetadata is minio-go's user metadata (keys without their
// x-amz-meta- prefix, canonical case) with lowercase keys, as written.
func userMetadata(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}
