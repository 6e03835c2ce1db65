package objects

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/eval"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

const (
	putBucket      = "bucket"
	putKey         = "key"
	putContent     = "content"
	putContentType = "content_type"
)

func init() {
	nodes.Register(nodes.Spec{
		Type:    "storage.put",
		Summary: "Write the body (a changed image is encoded here, once) or the JSON payload to a bucket.",
		Description: "The result (bucket, key, etag, size) is available to later steps as steps.<id>. " +
			"Writing the same input twice writes the same key: derive keys from the input so a retried run " +
			"replaces its own output instead of adding another.",
		Fields: []nodes.Field{
			{Name: putBucket, Kind: nodes.Template, Required: true, Role: nodes.RoleBucket, Doc: "Target bucket."},
			{Name: putKey, Kind: nodes.Template, Default: "{{ object?.key }}", Doc: "Target key; the triggering object's key by default."},
			{Name: putContent, Kind: nodes.Enum, Options: []string{"body", "payload"}, Default: "body", Doc: "What to write."},
			{Name: putContentType, Kind: nodes.String, Doc: "Content type; from the body or the key's extension by default."},
		},
		Examples: []nodes.Example{{Title: "Save a thumbnail under the same key", YAML: "node: storage.put\nwith:\n  bucket: thumbnails"}},
		New:      newPut,
	})
}

type put struct {
	bucket, key *eval.Template
	payload     bool
	ctype       string
	store       *storage.Store
}

func newPut(c *nodes.Config, d nodes.Deps) (nodes.Node, error) {
	return &put{
		bucket: c.Template(putBucket), key: c.Template(putKey),
		payload: c.String(putContent) == "payload", ctype: c.String(putContentType), store: d.Store,
	}, nil
}

func (p *put) Process(ctx context.Context, env *nodes.Envelope) error {
	b, k, err := target(ctx, env.Vars(), p.bucket, p.key)
	if err != nil {
		return err
	}
	var data []byte
	ctype := p.ctype
	if p.payload {
		if data, err = env.PayloadJSON(); err != nil {
			return nodes.Permanent(err)
		}
		if ctype == "" {
			ctype = "application/json"
		}
	} else {
		if data, err = env.Body(ctx); err != nil {
			return err
		}
		if data == nil {
			return nodes.Permanent(errors.New("no body to write: the message has no object and no step produced one (use content: payload to write the JSON payload)"))
		}
		if ctype == "" {
			ctype = env.BodyType()
		}
	}
	info, err := p.store.PutBytes(ctx, b, k, data, storage.PutOptions{ContentType: ctype,
		Metadata: map[string]string{storage.MetaRun: env.Run}}) // lineage: the run that wrote it
	if err != nil {
		return nodes.StorageError(fmt.Errorf("write %s/%s: %w", b, k, err))
	}
	env.CountWritten(int64(len(data)))
	env.Wrote(b, k)
	env.SetResult(nodes.ObjectMap(info))
	return nil
}

var _ nodes.Node = (*put)(nil)
