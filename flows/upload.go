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
func (e *Engine) storeUploads(ctx context.Context, t *HTTPTrigger, run, boundary string, body []byte) (map[string]any, []storage.ObjectInfo, error) {
	if t.Uploads == "" {
		return nil, nil, nodes.Permanent(errNoUploads)
	}
	form := map[string]any{}
	var files []storage.ObjectInfo
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, nodes.Permanent(fmt.Errorf("multipart body: %w", err))
		}
		name := part.FileName()
		if name == "" {
			v, err := io.ReadAll(part)
			if err != nil {
				return nil, nil, nodes.Permanent(fmt.Errorf("multipart field %s: %w", part.FormName(), err))
			}
			form[part.FormName()] = string(v)
			continue
		}
		key := run + "/" + path.Base(strings.ReplaceAll(name, "\\", "/"))
		if err := storage.ValidateKey(key); err != nil {
			return nil, nil, nodes.Permanent(fmt.Errorf("uploaded file name %q: %w", name, err))
		}
		info, err := e.opts.Store.Put(ctx, t.Uploads, key, part, storage.PutOptions{ContentType: part.Header.Get("Content-Type")})
		if err != nil {
			return nil, nil, fmt.Errorf("store upload %s: %w", name, err)
		}
		files = append(files, info)
	}
	return form, files, nil
}

// uploads stores a multipart request's files, or answers: 400 with the
// reason for a bad request, 503 (details in the log) when storage fails.
func (e *Engine) uploads(w http.ResponseWriter, r *http.Request, f *Flow, run, boundary string, body []byte) (map[string]any, []storage.ObjectInfo, bool) {
	form, files, err := e.storeUploads(r.Context(), f.Trigger.HTTP, run, boundary, body)
	switch {
	case err == nil:
		return form, files, true
	case nodes.IsPermanent(err):
		httpError(w, http.StatusBadRequest, err.Error(), run)
	default:
		e.log.Error("storing an upload failed", "flow", f.Name, "run", run, "error", err)
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "cannot store the upload now; retry later", run)
	}
	return nil, nil, false
}

// uploadVars describes stored uploads for request.files.
func uploadVars(files []storage.ObjectInfo) []any {
	out := make([]any, len(files))
	for i, o := range files {
		out[i] = nodes.ObjectMap(o)
	}
	return out
}
