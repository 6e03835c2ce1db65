package image

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"sync"

	"github.com/disintegration/imaging"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

// overlaySource is a watermark's overlay image: read from a file when the
// flow is built, or from a bucket on first use (then kept).
type overlaySource struct {
	bucket, key string
	store       *storage.Store
	lim         Limits

	mu  sync.Mutex
	img *image.NRGBA
}

// newOverlaySource reads the image block; problems are reported on c.
func newOverlaySource(c *nodes.Config, d nodes.Deps, lim Limits) *overlaySource {
	o := &overlaySource{bucket: c.String("bucket"), key: c.String("key"), store: d.Store, lim: lim}
	file := c.String("file")
	switch {
	case file != "" && (o.bucket != "" || o.key != ""):
		c.Problemf("file", "set file, or bucket and key, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			c.Problemf("file", "%v", err)
			break
		}
		img, _, _, _, res, err := decode(context.Background(), b, lim, nil)
		if err != nil {
			c.Problemf("file", "%s: %v", file, err)
			break
		}
		o.img = imaging.Clone(img)
		res.done()
	case o.bucket == "" || o.key == "":
		c.Problemf("", "set file, or bucket and key")
	}
	return o
}

func (o *overlaySource) get(ctx context.Context) (*image.NRGBA, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.img != nil {
		return o.img, nil
	}
	if o.store == nil {
		return nil, fmt.Errorf("no storage to read the overlay %s/%s from", o.bucket, o.key)
	}
	b, _, err := o.store.ReadAll(ctx, o.bucket, o.key, o.lim.MaxBytes)
	if err != nil {
		return nil, nodes.StorageError(fmt.Errorf("watermark overlay: %w", err))
	}
	img, _, _, _, res, err := decode(ctx, b, o.lim, nil)
	if err != nil {
		if errors.Is(err, errWait) {
			return nil, fmt.Errorf("watermark overlay %s/%s: %w", o.bucket, o.key, err)
		}
		return nil, nodes.Permanent(fmt.Errorf("watermark overlay %s/%s: %w", o.bucket, o.key, err))
	}
	o.img = imaging.Clone(img)
	res.done()
	return o.img, nil
}
