package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/machines"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
	"github.com/sluicehq/sluice/web"
)

// uiOptions are `sluice run`'s dashboard flags.
type uiOptions struct {
	enabled  bool
	token    string // --admin-token; SLUICE_ADMIN_TOKEN when empty
	listen   string // --ui-listen: a listener of the dashboard's own; "": --listen's
	machines sharedMachines
}

func (u *uiOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&u.enabled, "ui", true, "serve the dashboard at /ui and its API at /ui/api on --listen")
	f.StringVar(&u.listen, "ui-listen", os.Getenv("SLUICE_UI_LISTEN"), "serve the dashboard on this address of its own (another origin than the HTTP flows', which then cannot script it) rather than on --listen (which must be on too; env SLUICE_UI_LISTEN)")
	f.StringVar(&u.token, "admin-token", "", "token the dashboard and its API require (login form, or Authorization: Bearer); required when --listen is not loopback-only (env SLUICE_ADMIN_TOKEN)")
}

// adminToken is --admin-token, else SLUICE_ADMIN_TOKEN (read here so --help
// never prints it).
func (u *uiOptions) adminToken() string {
	if u.token != "" {
		return u.token
	}
	return os.Getenv("SLUICE_ADMIN_TOKEN")
}

// checkAdminToken refuses a dashboard anyone on the network could use: on a
// listener reachable from elsewhere the admin token is required. addr is
// --listen; the dashboard's own --ui-listen counts instead when set.
func (u *uiOptions) checkAdminToken(addr string) error {
	if u.listen != "" {
		addr = u.listen
	}
	if !u.enabled || u.adminToken() != "" || loopbackOnly(addr) {
		return nil
	}
	return fmt.Errorf("--listen %s is reachable from other machines and serves the dashboard and its runs and dead-letter API: "+
		"set SLUICE_ADMIN_TOKEN (or --admin-token), listen on 127.0.0.1, or turn the dashboard off with --ui=false", addr)
}

// dashboard makes the dashboard of engine, or nil when it is off. An HTTP
// flow whose path is under /ui, which the dashboard would hide, is an
// error.
func (u *uiOptions) dashboard(g *globals, fl []*flows.Flow, engine *flows.Engine, st *state.DB, store *storage.Store, log *slog.Logger) (*web.Server, error) {
	if !u.enabled {
		return nil, nil
	}
	if err := uiPathConflict(fl); err != nil {
		return nil, err
	}
	return web.New(web.Options{
		Engine: engine, State: st, Store: store, AdminToken: u.adminToken(), Logger: log,
		Machines: u.machines.get(func(ctx context.Context) (machines.Store, error) { return openMachines(ctx, g, "") }),
	})
}

// uiPathConflict is the error of the first HTTP flow whose path is under
// /ui, which the dashboard would hide; nil when none is.
func uiPathConflict(fl []*flows.Flow) error {
	for _, f := range fl {
		if h := f.Trigger.HTTP; h != nil && (h.Path == "/ui" || strings.HasPrefix(h.Path, "/ui/")) {
			return fmt.Errorf("flow %s (%s): its path %s is under /ui, the dashboard's: choose another path, or turn the dashboard off with --ui=false", f.Name, f.Pos, h.Path)
		}
	}
	return nil
}

// sharedMachines opens the dashboard's machine store once, when a page
// first needs it (machines.db exists only after a state.transition ran),
// and hands that one store (one connection pool) to every request;
// close closes it.
type sharedMachines struct {
	mu sync.Mutex
	st machines.Store
}

// get is the dashboard's Machines option: the stores it returns must be
// closed as usual, which leaves the shared one open.
func (m *sharedMachines) get(open func(context.Context) (machines.Store, error)) func(context.Context) (machines.Store, error) {
	return func(ctx context.Context) (machines.Store, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.st == nil {
			st, err := open(ctx)
			if err != nil {
				return nil, err
			}
			m.st = st
		}
		return keepOpen{m.st}, nil
	}
}

func (m *sharedMachines) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st == nil {
		return nil
	}
	err := m.st.Close()
	m.st = nil
	return err
}

// keepOpen is a machines.Store whose Close leaves the store open.
type keepOpen struct{ machines.Store }

func (keepOpen) Close() error { return nil }

// openMachines opens the state machines' store: dbPath (a SQLite file or
// a postgres:// URL) when given, else the --state database when it is
// PostgreSQL, else machines.db in the home, which must exist (an error
// wrapping fs.ErrNotExist otherwise).
func openMachines(ctx context.Context, g *globals, dbPath string) (machines.Store, error) {
	p := dbPath
	if p == "" && machines.IsPostgresURL(g.stateURL()) {
		p = g.stateURL()
	}
	if machines.IsPostgresURL(p) {
		return machines.Open(ctx, p)
	}
	if p == "" {
		p = filepath.Join(g.home, "machines.db")
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		// Reading must not create it (in the wrong folder, perhaps).
		return nil, fmt.Errorf("no machine state at %s: no state.transition step has run with this home (--home, or --db): %w", p, err)
	}
	return machines.OpenSQLite(p)
}

// mountUI serves the dashboard on the listener's mux: /ui/ (its API under
// /ui/api/), and GET / redirecting to /ui/ unless an HTTP flow serves /
// when the request comes (flows come and go with reloads): then root, the
// flows' handler, serves it. root nil: no flows on this listener.
func mountUI(mux *http.ServeMux, ui http.Handler, engine *flows.Engine, root http.Handler) {
	mux.Handle("/ui/", ui)
	mux.Handle("/ui", ui)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if root != nil && engine.ServesPath("/") {
			root.ServeHTTP(w, r)
			return
		}
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
}

// serveUI serves the dashboard alone on its own listener (--ui-listen),
// with --listen's limits and TLS.
func serveUI(addr string, limits listenerLimits, ui http.Handler, certs *certReloader) (*http.Server, string, error) {
	ln, err := limits.listen(addr)
	if err != nil {
		return nil, "", fmt.Errorf("--ui-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mountUI(mux, ui, nil, nil)
	srv := limits.server(mux, 30*time.Second) // pages are small; --write-timeout wins
	if certs != nil {
		srv.TLSConfig = certs.tlsConfig()
		go func() { _ = srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = srv.Serve(ln) }()
	}
	return srv, ln.Addr().String(), nil
}
