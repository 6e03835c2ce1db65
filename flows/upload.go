package flows

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/storage"
)

// errNoUploads: a multipart request on a flow without an uploads bucket.
var errNoUploads = errors.New("multipart uploads are not accepted here (the trigger sets no uploads bucket)")

// isMultipart reports whether ctype is multipart/form-data, with its
// boundary.
func isMultipart(ctype string) (string, bool) {
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return "", false
	}
	return params["boundary"], true
}

// storeUploads writes a multipart request's files to the flow's uploads
// bucket under "<run>/<file name>" and returns the form's other fields
// and the files, in order. Bad parts are the client's error (permanent).
//
// A request is refused whole: on any error the files it stored are removed.
func (e *Engine) storeUploads(ctx context.Context, t *HTTPTrigger, run, boundary string, body []byte) (form map[string]any, files []storage.ObjectInfo, err error) {
	if t.Uploads == "" {
		return nil, nil, nodes.Permanent(errNoUploads)
	}
	defer func() {
		if err != nil {
			e.removeUploads(files)
			files = nil
		}
	}()
	form = map[string]any{}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for parts := 1; ; parts++ {
		if parts > maxUploadParts {
			return nil, files, nodes.Permanent(fmt.Errorf("multipart body: more than %d parts", maxUploadParts))
		}
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, files, nodes.Permanent(fmt.Errorf("multipart body: %w", err))
		}
		name := part.FileName()
		if name == "" {
			v, err := io.ReadAll(part)
			if err != nil {
				return nil, files, nodes.Permanent(fmt.Errorf("multipart field %s: %w", part.FormName(), err))
			}
			form[part.FormName()] = string(v)
			continue
		}
		key := run + "/" + path.Base(strings.ReplaceAll(name, "\\", "/"))
		if err := storage.ValidateKey(key); err != nil {
			return nil, files, nodes.Permanent(fmt.Errorf("uploaded file name %q: %w", name, err))
		}
		info, err := e.opts.Store.Put(ctx, t.Uploads, key, part, storage.PutOptions{ContentType: part.Header.Get("Content-Type"),
			Metadata: map[string]string{storage.MetaRun: run}})
		if err != nil {
			// A name the bucket refuses (the folder driver's hidden and
			// partial names) is the client's to change: 400.
			return nil, files, nodes.StorageError(fmt.Errorf("store upload %s: %w", name, err))
		}
		files = append(files, info)
	}
	return form, files, nil
}

// uploads stores a multipart request's files, or answers: 400 with the
// reason for a bad request, 503 (details in the log) when storage fails.
func (rn *runner) uploads(w http.ResponseWriter, r *http.Request, run, boundary string, body []byte) (map[string]any, []storage.ObjectInfo, bool) {
	form, files, err := rn.e.storeUploads(r.Context(), rn.f.Trigger.HTTP, run, boundary, body)
	switch {
	case err == nil:
		return form, files, true
	case nodes.IsPermanent(err):
		httpError(w, http.StatusBadRequest, err.Error(), run)
	default:
		rn.log.Error("storing an upload failed", "run", run, "error", err)
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "cannot store the upload now; retry later", run)
	}
	return nil, nil, false
}

// maxUploadParts bounds the parts (files and fields) of one multipart
// request.
const maxUploadParts = 100

// removeUploads deletes the files of a request that was refused or whose
// run failed in the request (sync): nothing of it stays in the bucket.
func (e *Engine) removeUploads(files []storage.ObjectInfo) {
	for _, o := range files {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := e.opts.Store.Delete(ctx, o.Bucket, o.Key); err != nil {
			e.log.Warn("removing an upload of a failed request failed", "bucket", o.Bucket, "key", o.Key, "error", err)
		}
		cancel()
	}
}

// uploadVars describes stored uploads for request.files.
func uploadVars(files []storage.ObjectInfo) []any {
	out := make([]any, len(files))
	for i, o := range files {
		out[i] = nodes.ObjectMap(o)
	}
	return out
}
