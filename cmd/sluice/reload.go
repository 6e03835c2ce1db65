package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/nodes"
)

// Reload results, the values of sluice_reloads_total's result label.
const (
	reloadApplied   = "applied"   // flows were added, changed or removed
	reloadUnchanged = "unchanged" // the files hold the running flows
	reloadInvalid   = "invalid"   // the files have problems: nothing changed
	reloadFailed    = "failed"    // the engine refused the flows, or some did not start
)

// reloadDebounce is how long the flow files must be quiet after a change
// before they are loaded: an editor's save is a burst of writes, renames
// and removals.
const reloadDebounce = 250 * time.Millisecond

// reloader loads the flow files again and hands them to the engine, on
// SIGHUP and, with --watch, when they change on disk. Problems in the
// files leave the running flows as they are; they are logged with their
// positions and shown on /readyz until a reload succeeds.
type reloader struct {
	paths  []string
	loader flows.Loader
	engine *flows.Engine
	log    *slog.Logger
	total  *prometheus.CounterVec
	// write is the listener's derived write timeout (0: none, or set by
	// flag): a reloaded flow that needs longer is warned about.
	write time.Duration
	// check, when set, refuses loaded flows as a problem in the files
	// (the dashboard's: no HTTP flow under /ui).
	check func([]*flows.Flow) error

	mu   sync.Mutex
	last *reloadStatus // nil before the first reload
}

// reloadStatus is the outcome of the last reload, for /readyz.
type reloadStatus struct {
	at       time.Time
	trigger  string // "SIGHUP" or "watch"
	result   string
	problems []string
	report   flows.Report
}

func newReloader(paths []string, loader flows.Loader, engine *flows.Engine, log *slog.Logger, reg prometheus.Registerer) *reloader {
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_reloads_total", Help: "Reloads of the flow files (SIGHUP, --watch) by result: applied, unchanged, invalid, failed."}, []string{"result"})
	for _, r := range []string{reloadApplied, reloadUnchanged, reloadInvalid, reloadFailed} {
		total.WithLabelValues(r)
	}
	reg.MustRegister(total)
	return &reloader{paths: paths, loader: loader, engine: engine, log: log, total: total}
}

// run reloads on each signal from hup and, when w is not nil, on changes
// it reports, until ctx ends. It starts reloading once the engine runs
// (changes made before are loaded then).
func (rl *reloader) run(ctx context.Context, hup <-chan os.Signal, w *flowWatcher) {
	var changes <-chan struct{}
	if w != nil {
		changes = w.changes
		go w.run(ctx)
	}
	select {
	case <-rl.engine.Ready():
	case <-ctx.Done():
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			rl.reload(ctx, "SIGHUP")
		case <-changes:
			rl.reload(ctx, "watch")
		}
	}
}

// reload loads the flow files and reloads the engine with them.
func (rl *reloader) reload(ctx context.Context, trigger string) {
	st := &reloadStatus{at: time.Now().UTC(), trigger: trigger}
	defer func() {
		rl.total.WithLabelValues(st.result).Inc()
		rl.mu.Lock()
		rl.last = st
		rl.mu.Unlock()
	}()
	fl, err := rl.loader.Load(rl.paths...)
	if err == nil && rl.check != nil {
		err = rl.check(fl)
	}
	if err != nil {
		st.result = reloadInvalid
		var probs nodes.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				st.problems = append(st.problems, p.Error())
				rl.log.Error("flow file problem; the running flows are kept", "problem", p.Error(), "trigger", trigger)
			}
		} else {
			st.problems = []string{err.Error()}
			rl.log.Error("cannot load the flow files; the running flows are kept", "error", err, "trigger", trigger)
		}
		return
	}
	rep, err := rl.engine.Reload(ctx, fl)
	st.report = rep
	attrs := []any{"trigger", trigger,
		"added", len(rep.Added), "changed", len(rep.Changed), "removed", len(rep.Removed), "unchanged", len(rep.Unchanged)}
	for _, l := range []struct {
		key   string
		names []string
	}{{"added_flows", rep.Added}, {"changed_flows", rep.Changed}, {"removed_flows", rep.Removed}} {
		if len(l.names) > 0 {
			attrs = append(attrs, l.key, strings.Join(l.names, ","))
		}
	}
	switch {
	case err != nil:
		st.result = reloadFailed
		st.problems = strings.Split(err.Error(), "\n")
		rl.log.Error("reload failed", append(attrs, "error", err)...)
	case rep.Changes() == 0:
		st.result = reloadUnchanged
		rl.log.Info("flow files reloaded: nothing changed", attrs...)
	default:
		st.result = reloadApplied
		rl.log.Info("flow files reloaded", attrs...)
	}
	if rl.write > 0 && writeTimeout(fl) > rl.write {
		rl.log.Warn("a reloaded HTTP flow may take longer than the listener's write timeout, set at start; restart, or set --write-timeout",
			"write_timeout", rl.write, "needed", writeTimeout(fl))
	}
}

// status describes the last reload, for /readyz; "" before the first.
func (rl *reloader) status() string {
	if rl == nil {
		return ""
	}
	rl.mu.Lock()
	st := rl.last
	rl.mu.Unlock()
	if st == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "last reload: %s (%s): %s", st.at.Format(time.RFC3339), st.trigger, st.result)
	switch st.result {
	case reloadInvalid:
		b.WriteString("; the running flows are kept")
	case reloadApplied, reloadFailed:
		fmt.Fprintf(&b, " (added %d, changed %d, removed %d, unchanged %d)",
			len(st.report.Added), len(st.report.Changed), len(st.report.Removed), len(st.report.Unchanged))
	}
	b.WriteString("\n")
	for _, p := range st.problems {
		b.WriteString("  " + p + "\n")
	}
	return b.String()
}

// flowWatcher reports changes of flow files: under the folders given
// (new subfolders included) and of the files given. It watches folders,
// not files, so saves that write a new file and rename it over the old
// one are seen. A burst of changes is reported once, after it settles.
type flowWatcher struct {
	w       *fsnotify.Watcher
	log     *slog.Logger
	files   map[string]bool // files named on the command line
	dirs    map[string]bool // folders of flows (and their subfolders)
	changes chan struct{}
}

func newFlowWatcher(paths []string, log *slog.Logger) (*flowWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	fw := &flowWatcher{w: w, log: log, files: map[string]bool{}, dirs: map[string]bool{}, changes: make(chan struct{}, 1)}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			w.Close()
			return nil, err
		}
		st, err := os.Stat(abs)
		if err != nil {
			w.Close()
			return nil, err
		}
		if !st.IsDir() {
			fw.files[abs] = true
			err = w.Add(filepath.Dir(abs))
		} else {
			err = fw.addTree(abs)
		}
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("watch %s: %w", p, err)
		}
	}
	return fw, nil
}

// addTree watches a folder and its subfolders, hidden ones excepted (the
// loader skips them too).
func (fw *flowWatcher) addTree(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		fw.dirs[filepath.Clean(path)] = true
		return fw.w.Add(path)
	})
}

func (fw *flowWatcher) close() { _ = fw.w.Close() }

// run turns file events into debounced changes until ctx ends.
func (fw *flowWatcher) run(ctx context.Context) {
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-fw.w.Events:
			if !ok {
				return
			}
			if fw.relevant(ev) {
				quiet.Reset(reloadDebounce)
			}
		case err, ok := <-fw.w.Errors:
			if !ok {
				return
			}
			fw.log.Warn("watching the flow files", "error", err)
			quiet.Reset(reloadDebounce) // events may have been lost: load again
		case <-quiet.C:
			select {
			case fw.changes <- struct{}{}:
			default: // a reload is pending already
			}
		}
	}
}

// relevant reports whether an event may change the flows; a new folder
// among the flow folders is watched too.
func (fw *flowWatcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	if fw.files[name] {
		return true
	}
	if !fw.dirs[filepath.Dir(name)] {
		return false // a folder watched for a named file: other files do not count
	}
	if ev.Has(fsnotify.Create) {
		if st, err := os.Stat(name); err == nil && st.IsDir() {
			if strings.HasPrefix(filepath.Base(name), ".") {
				return false
			}
			if err := fw.addTree(name); err != nil {
				fw.log.Warn("watching a new folder", "folder", name, "error", err)
			}
			return true
		}
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		return true // a file or a folder of flows went away
	}
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}
