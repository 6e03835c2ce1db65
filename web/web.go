// Package web is Sluice's dashboard, served by `sluice run` at /ui: the
// flows with live counters, each flow drawn from its YAML, the runs with
// their step timelines, the dead letters grouped by cause with replay and
// purge, usage per flow per day, and state machine entities. Pages are
// rendered on the server with html/template and read without JavaScript;
// the vendored htmx (web/static) refreshes the live parts. A small JSON API
// under /ui/api serves the same data to scripts.
//
// Access: see auth.go. Every handler is safe for concurrent use.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/machines"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Engine is the engine's read side and the one action the dashboard
// takes through it; *flows.Engine implements it.
type Engine interface {
	Flows() []flows.FlowView
	Flow(name string) (flows.FlowView, bool)
	Lag(ctx context.Context, views []flows.FlowView)
	ReplayDeadLetters(ctx context.Context, f state.DeadLetterFilter, progress func(done, total int)) (int, error)
}

var _ Engine = (*flows.Engine)(nil)

// Options are the dashboard's services.
type Options struct {
	Engine Engine    // required
	State  *state.DB // runs, dead letters, usage; pages say so when nil
	// Machines opens the state machines' store for one request (and is
	// closed after it); nil when there is none. An error wrapping
	// fs.ErrNotExist means no machine has run yet.
	Machines func(ctx context.Context) (machines.Store, error)
	// AdminToken, when set, is needed for every page and API call (see
	// auth.go); empty leaves reading open, for a loopback-only listener.
	AdminToken string
	Logger     *slog.Logger // slog.Default() when nil
	// Store serves the objects runs read and wrote (/ui/objects/…), to
	// the same credentials as the pages; nil: objects are named, not
	// linked.
	Store *storage.Store
}

// Server serves the dashboard and its API.
type Server struct {
	opts  Options
	log   *slog.Logger
	auth  *access
	pages map[string]*template.Template
	rates rates
	jobs  jobs
	ctx   context.Context // ends replay jobs on Close
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// New prepares the dashboard.
func New(opts Options) (*Server, error) {
	if opts.Engine == nil {
		return nil, errors.New("web: an engine is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "dashboard"), auth: newAccess(opts.AdminToken)}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.jobs.byID = map[string]*job{}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s.pages = pages
	return s, nil
}

// Close cancels replay jobs still running and waits for them.
func (s *Server) Close() error {
	s.stop()
	s.wg.Wait()
	return nil
}

// Handler serves /ui/… (the pages), /ui/static/… (assets, open to all)
// and /ui/api/… (JSON). Mount it at /ui/ (and /ui).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", cacheFor(time.Hour, http.FileServerFS(static))))
	mux.HandleFunc("GET /ui/login", s.loginPage)
	mux.HandleFunc("POST /ui/login", s.login)

	page := func(pattern string, h func(w http.ResponseWriter, r *http.Request, p *page)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			id := s.auth.identify(w, r)
			if !s.auth.allowed(w, r, id, false) {
				return
			}
			h(w, r, &page{CSRF: s.auth.csrf(id.session), LoggedIn: !s.auth.open() && id.session != ""})
		})
	}
	page("GET /ui/{$}", s.flowsPage)
	page("GET /ui/flows/live", s.flowsLive)
	page("GET /ui/flows/{name}", s.flowPage)
	page("GET /ui/flows/{name}/graph", s.flowGraph)
	page("GET /ui/runs", s.runsPage)
	page("GET /ui/runs/{id}", s.runPage)
	page("GET /ui/dlq", s.dlqPage)
	page("GET /ui/dlq/{id}", s.deadLetterPage)
	page("POST /ui/dlq/replay", s.replay)
	page("POST /ui/dlq/purge", s.purge)
	page("GET /ui/jobs/{id}", s.jobPage)
	page("GET /ui/usage", s.usagePage)
	page("GET /ui/machines", s.machinesPage)
	page("GET /ui/objects/{bucket}/{key...}", s.object)
	page("POST /ui/logout", s.logout)

	api := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			id := s.auth.identify(w, r)
			if s.auth.allowed(w, r, id, true) {
				h(w, r)
			}
		})
	}
	api("GET /ui/api/flows", s.apiFlows)
	api("GET /ui/api/runs", s.apiRuns)
	api("GET /ui/api/runs/{id}", s.apiRun)
	api("GET /ui/api/deadletters", s.apiDeadLetters)
	api("GET /ui/api/deadletters/{id}", s.apiDeadLetter)
	api("POST /ui/api/deadletters/replay", s.apiReplay)
	api("POST /ui/api/deadletters/purge", s.apiPurge)
	mux.HandleFunc("/ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusMovedPermanently) })
	return securityHeaders(mux)
}

// securityHeaders forbids framing and sniffing and keeps the pages to
// their own scripts and styles.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
		if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(d.Seconds())))
		h.ServeHTTP(w, r)
	})
}

// page is what every page template gets: the request's CSRF token and
// login state, its title and its own data.
type page struct {
	Title    string
	Nav      string // the menu entry to mark current
	CSRF     string
	LoggedIn bool
	Open     bool // reading needs no login
	Data     any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, name string, p *page) {
	t, ok := s.pages[name]
	if !ok {
		s.fail(w, r, fmt.Errorf("no template %q", name))
		return
	}
	p.Open = s.auth.open()
	var b strings.Builder
	tmpl := "layout"
	if r.Header.Get("HX-Request") == "true" && t.Lookup("fragment") != nil {
		tmpl = "fragment"
	}
	if err := t.ExecuteTemplate(&b, tmpl, p); err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

// renderFragment renders one named template of a page alone (an htmx
// refresh).
func (s *Server) renderFragment(w http.ResponseWriter, r *http.Request, name, fragment string, p *page) {
	var b strings.Builder
	if err := s.pages[name].ExecuteTemplate(&b, fragment, p); err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("dashboard page failed", "path", r.URL.Path, "error", err)
	http.Error(w, "internal error: "+err.Error(), http.StatusInternalServerError)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, p *page, what string) {
	w.WriteHeader(http.StatusNotFound)
	p.Title = "Not found"
	p.Data = what
	s.render(w, r, "notfound", p)
}

// noState answers when the engine records no state.
func (s *Server) noState(w http.ResponseWriter, r *http.Request, p *page) bool {
	if s.opts.State != nil {
		return false
	}
	p.Title = "No state"
	p.Data = "This engine records no runs: it runs without a state database."
	w.WriteHeader(http.StatusNotFound)
	s.render(w, r, "notfound", p)
	return true
}

// one returns the only element of a lookup by id, having answered the
// request when the lookup failed (500) or found nothing (404, missing).
func one[T any](s *Server, w http.ResponseWriter, r *http.Request, p *page, found []T, err error, missing string) (T, bool) {
	var zero T
	if err != nil {
		s.fail(w, r, err)
		return zero, false
	}
	if len(found) == 0 {
		s.notFound(w, r, p, missing)
		return zero, false
	}
	return found[0], true
}
