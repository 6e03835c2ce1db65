package web

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"

	"github.com/sluicehq/sluice/storage"
)

// object serves an object of the store as a download: the input of a
// bucket run, what a step wrote. It is never rendered in the dashboard's
// origin (attachment, nosniff, a sandboxing CSP), so an uploaded HTML
// file cannot script the dashboard.
func (s *Server) object(w http.ResponseWriter, r *http.Request, _ *page) {
	if s.opts.Store == nil {
		http.Error(w, "this dashboard has no object store", http.StatusNotFound)
		return
	}
	bucket, key := r.PathValue("bucket"), r.PathValue("key")
	body, info, err := s.opts.Store.NewReader(r.Context(), bucket, key)
	switch {
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrBucketNotFound),
		errors.Is(err, storage.ErrInvalidKey), errors.Is(err, storage.ErrInvalidBucket):
		http.Error(w, "no object "+bucket+"/"+key+": "+err.Error(), http.StatusNotFound)
		return
	case err != nil:
		s.log.Warn("dashboard: reading an object failed", "bucket", bucket, "key", key, "error", err)
		http.Error(w, "cannot read "+bucket+"/"+key+": "+err.Error(), http.StatusBadGateway)
		return
	}
	defer body.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(key)}))
	if info.Size > 0 {
		h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
	}
	if _, err := io.Copy(w, body); err != nil {
		s.log.Debug("dashboard: object download ended early", "bucket", bucket, "key", key, "error", err)
	}
}
