package objects

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

const (
	presignBucket  = "bucket"
	presignKey     = "key"
	presignMethod  = "method"
	presignExpires = "expires"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "storage.presign",
		Summary: "Make a presigned URL: anyone holding it may GET (download) or PUT (upload) one object until it expires. Needs s3:// storage.",
		Description: "The result is {url, method, bucket, key, expires_at}, for a respond step (a redirect, or the URL " +
			"in a JSON answer) or a publish. The URL points at the S3 endpoint of the storage URL, which clients " +
			"must be able to reach. Folder (fs://) and in-memory (mem://) storage cannot make presigned URLs: " +
			"flows using this node fail validation there.",
		Fields: []nodes.Field{
			{Name: presignBucket, Kind: nodes.Template, Default: "{{ object?.bucket }}", Role: nodes.RoleBucket, Doc: "Bucket; the triggering object's by default."},
			{Name: presignKey, Kind: nodes.Template, Default: "{{ object?.key }}", Doc: "Key; the triggering object's by default."},
			{Name: presignMethod, Kind: nodes.Enum, Options: []string{"GET", "PUT"}, Default: "GET", Doc: "GET: download the object; PUT: upload to the key."},
			{Name: presignExpires, Kind: nodes.Duration, Default: 15 * time.Minute, Doc: "How long the URL is valid: 1s to 168h (7 days)."},
		},
		Examples: []nodes.Example{
			{Title: "Redirect to a thumbnail", YAML: "node: storage.presign\nid: link\nwith:\n  bucket: thumbnails\n  key: '{{ steps.image.thumbnail }}'\n  expires: 5m"},
			{Title: "Let a client upload directly", YAML: "node: storage.presign\nwith:\n  bucket: uploads\n  key: '{{ run }}/original'\n  method: PUT"},
		},
		New: newPresign,
	})
}

type presignNode struct {
	bucket, key *eval.Template
	method      string
	expires     time.Duration
	store       *storage.Store
}

func newPresign(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	exp := c.Duration(presignExpires)
	if exp < storage.MinPresignExpiry || exp > storage.MaxPresignExpiry {
		return nil, c.Errorf(presignExpires, "%s is outside 1s to 168h (S3's limits)", exp)
	}
	if d.Store != nil && !d.Store.CanPresign() {
		return nil, c.Errorf("", "presigned URLs need s3:// storage; this storage cannot make them (nothing serves folder or in-memory buckets over HTTP)")
	}
	m := http.MethodGet
	if c.String(presignMethod) == "PUT" {
		m = http.MethodPut
	}
	return &presignNode{bucket: c.Template(presignBucket), key: c.Template(presignKey), method: m, expires: exp, store: d.Store}, nil
}

func (n *presignNode) Process(ctx context.Context, env *nodes.Envelope) error {
	b, k, err := target(ctx, env.Vars(), n.bucket, n.key)
	if err != nil {
		return err
	}
	now := time.Now()
	u, err := n.store.Presign(ctx, n.method, b, k, n.expires)
	if err != nil {
		return nodes.StorageError(fmt.Errorf("presign %s %s/%s: %w", n.method, b, k, err))
	}
	env.SetResult(map[string]any{
		"url": u, "method": n.method, "bucket": b, "key": k,
		"expires_at": now.Add(n.expires).UTC().Format(time.RFC3339),
	})
	return nil
}

var _ nodes.Node = (*presignNode)(nil)
