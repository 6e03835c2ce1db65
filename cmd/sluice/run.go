package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/internal/gctune"
	"github.com/sluicehq/sluice/internal/poison"
	"github.com/sluicehq/sluice/internal/redact"
	"github.com/sluicehq/sluice/nodes"
	"github.com/sluicehq/sluice/nodes/ai"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
)

func runCmd(g *globals) *cobra.Command {
	var listen string
	var drain time.Duration
	var maxCrashes int
	var retentionText, gcTargetText string
	var limits listenerLimits
	var tlsCert, tlsKey string
	var watch bool
	var ui uiOptions
	cmd := &cobra.Command{
		Use:   "run PATH...",
		Short: "Run flows until interrupted",
		Long: `Run loads the flow files (folders are searched for *.yaml and *.yml), validates
them, and runs them until SIGINT or SIGTERM. On a signal it stops taking
messages, lets runs in flight finish (up to --drain-timeout, then cancels
them: they are redelivered on the next start), and exits.

An HTTP listener serves /healthz, /readyz and Prometheus /metrics, and, with
s3:// storage, /hooks/s3: the endpoint for MinIO's webhook notification
target (bearer token from SLUICE_WEBHOOK_TOKEN when set).

On SIGHUP, and with --watch whenever the flow files change (folders are
watched, so new files and editors' atomic saves count), the files are
loaded and validated again. If they are valid, the flows that changed
drain their runs in flight and restart on the new definition, added
flows start and removed ones stop, while the others keep running
untouched; nothing is acked twice or lost. If they are not, the running
flows are kept and the problems are logged with file:line:col and shown
on /readyz until a reload succeeds. A flow is restarted only when its own
YAML changes: files it refers to (a function's script, a model) are read
again when its flow changes, not when they do.

The listener also serves the dashboard at /ui (flows with live counts, runs,
dead letters with replay, usage, state machines) and its JSON API at
/ui/api. Off loopback they need the admin token (SLUICE_ADMIN_TOKEN or
--admin-token: the login form, or Authorization: Bearer), and sluice run
refuses to start without one; --ui=false turns the dashboard off.

With --tls-cert and --tls-key the listener serves HTTPS (HTTP/2 and
HTTP/1.1). The files are read again when they change (a renewed
certificate is served without a restart); a pair that does not load, such
as a renewal caught halfway, leaves the previous one in use.`,
		Example: `  sluice run examples/thumbnails
  sluice run --listen :8787 flows/
  sluice run --watch flows/            # edit a flow, save: it is reloaded
  kill -HUP $(pidof sluice)            # reload without --watch
  SLUICE_BROKER=mem:// sluice run flows/orders.yaml
  sluice run --listen :8443 --tls-cert /etc/sluice/tls.crt --tls-key /etc/sluice/tls.key flows/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			retention, err := time.ParseDuration(retentionText)
			if err != nil || retention < 0 {
				return fmt.Errorf("--retention %q: want a duration such as 720h (30 days), or 0 to keep everything", retentionText)
			}
			gcTarget, err := humanize.ParseBytes(gcTargetText)
			if err != nil {
				return fmt.Errorf("--gc-target %q: want a size such as 256MiB, or 0 for Go's default pace", gcTargetText)
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			slog.SetDefault(log)
			if _, set := os.LookupEnv("GOGC"); set {
				log.Info("GOGC is set: the garbage collector keeps its pace, --gc-target is not applied", "GOGC", os.Getenv("GOGC"))
			} else if applied := gctune.Start(gcTarget); applied > 0 {
				log.Debug("garbage collector paced by a heap target", "gc_target", humanize.IBytes(applied))
			}
			if maxCrashes < 1 {
				if v := os.Getenv("SLUICE_MAX_CRASHES"); v != "" && !cmd.Flags().Changed("max-crashes") {
					return fmt.Errorf("SLUICE_MAX_CRASHES must be a whole number of at least 1, not %q", v)
				}
				return fmt.Errorf("--max-crashes must be at least 1, not %d", maxCrashes)
			}
			certs, err := newCertReloader(tlsCert, tlsKey, log)
			if err != nil {
				return err
			}
			if listen != "" || ui.listen != "" {
				if err := ui.checkAdminToken(listen); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1) // reload, rather than the default exit
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)

			store, err := storage.Open(ctx, g.storageURL())
			if err != nil {
				return err
			}
			defer store.Close()
			// Nodes publishing outside runs (state.transition's timers) start
			// after the broker below is open.
			var broker brokers.Broker
			publish := func(_ context.Context, topic string, msgs ...*message.Message) error {
				if broker == nil {
					return errors.New("the broker is not open yet")
				}
				return broker.Publisher().Publish(topic, msgs...)
			}
			deps := nodes.Deps{Store: store, Logger: log, StateDir: g.home, State: g.stateURL(), Publish: publish}
			var watcher *flowWatcher
			if watch {
				// Watching before the first load: no save is missed.
				if watcher, err = newFlowWatcher(args, log); err != nil {
					return fmt.Errorf("--watch: %w", err)
				}
				defer watcher.close()
			}
			loader := flows.Loader{Registry: registry(), Deps: deps}
			fl, err := loader.Load(args...)
			var probs nodes.Problems
			if errors.As(err, &probs) {
				return exitError{2, fmt.Errorf("%s\n%d problem(s); nothing started", probs.Error(), len(probs))}
			}
			if err != nil {
				return err
			}
			broker, err = brokers.Open(ctx, g.brokerURL(), flows.WatermillLogger(log.With("component", "broker")))
			if err != nil {
				return err
			}
			defer broker.Close()
			st, err := g.openState(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			if n, err := st.RecoverRuns(ctx); err != nil {
				return err
			} else if n > 0 {
				log.Warn("recreated run records lost in a crash from the completion ledger", "runs", n)
			}

			inflight, err := poison.Open(ctx, g.home)
			if errors.Is(err, poison.ErrLocked) {
				return fmt.Errorf("another sluice run uses the home %s: %w", g.home, err)
			}
			if err != nil {
				return err
			}
			defer inflight.Close()

			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			reg.MustRegister(ai.Metrics) // model inference histograms (ai.onnx, ai.ocr)
			tracing, stopTracing, err := startTracing(ctx, log)
			if err != nil {
				return err
			}
			defer stopTracing()
			engine, err := flows.NewEngine(flows.Options{
				Broker: broker, Store: store, State: st, Logger: log, Poison: inflight,
				Metrics: flows.NewMetrics(reg), DrainTimeout: drain, MaxCrashes: maxCrashes, TracerProvider: tracing.Provider,
			}, fl)
			if err != nil {
				return err
			}
			reloads := newReloader(args, loader, engine, log, reg)
			if listen != "" && limits.write == 0 {
				reloads.write = writeTimeout(fl)
			}
			if listen != "" {
				hooks := webhooks(store)
				if hooks != nil {
					if err := checkWebhookToken(listen, log); err != nil {
						return err
					}
				}
				dash, err := ui.dashboard(g, fl, engine, st, store, log)
				if dash != nil {
					reloads.check = uiPathConflict // a reloaded flow under /ui is refused too
				}
				if err != nil {
					return err
				}
				scheme := "http://"
				if certs != nil {
					scheme = "https://"
				}
				var mount func(*http.ServeMux)
				if dash != nil {
					defer ui.machines.close()
					defer dash.Close()
					if ui.listen == "" {
						mount = func(mux *http.ServeMux) { mountUI(mux, dash.Handler(), engine, engine.HTTPHandler()) }
					} else {
						usrv, uaddr, err := serveUI(ui.listen, limits, dash.Handler(), certs)
						if err != nil {
							return err
						}
						defer shutdown(usrv, 5*time.Second)
						log.Info("serving the dashboard", "url", scheme+uaddr+"/ui/", "login", ui.adminToken() != "")
					}
				}
				srv, addr, err := serveOps(listen, limits, writeTimeout(fl), engine, reloads.status, reg, hooks, certs, mount)
				if err != nil {
					return err
				}
				log.Info("serving /healthz, /readyz and /metrics", "addr", scheme+addr)
				if mount != nil {
					log.Info("serving the dashboard", "url", scheme+addr+"/ui/", "login", ui.adminToken() != "")
				}
				defer shutdown(srv, 5*time.Second)
			}
			for _, f := range fl {
				attrs := []any{"flow", f.Name, "trigger", string(f.Trigger.Kind), "steps", len(f.Steps)}
				switch t := f.Trigger; t.Kind {
				case flows.TriggerBucket:
					attrs = append(attrs, "bucket", t.Bucket.Bucket)
				case flows.TriggerTopic:
					attrs = append(attrs, "topic", t.Topic.Topic)
				case flows.TriggerSchedule:
					attrs = append(attrs, "schedule", t.Schedule.Cron)
				case flows.TriggerHTTP:
					attrs = append(attrs, "path", t.HTTP.Path)
				}
				log.Info("flow loaded", attrs...)
			}
			log.Info("using", "broker", redact.URL(g.brokerURL()), "storage", redact.URL(g.storageURL()), "state", state.Redact(g.stateURL()))
			// Hourly: prune past the retention (0 keeps everything) and
			// refresh the query planner's statistics.
			go st.Retain(ctx, retention, time.Hour, func(n int64, err error) {
				if err != nil {
					log.Warn("maintaining the run ledger failed", "error", err)
				} else if n > 0 {
					log.Info("pruned the run ledger", "rows", n, "older_than", retention)
				}
			})
			reloading := make(chan struct{})
			go func() { defer close(reloading); reloads.run(ctx, hup, watcher) }()
			err = engine.Run(ctx)
			stop() // the engine may have stopped on its own
			<-reloading
			return err
		},
	}
	cmd.Flags().StringVar(&listen, "listen", env("SLUICE_LISTEN", "127.0.0.1:8787"), "address of /healthz, /readyz and /metrics; empty to disable (env SLUICE_LISTEN)")
	cmd.Flags().BoolVar(&watch, "watch", false, "reload the flows when their files change (SIGHUP reloads them with or without it)")
	cmd.Flags().DurationVar(&drain, "drain-timeout", 30*time.Second, "on shutdown, how long runs in flight may take before they are cancelled")
	cmd.Flags().IntVar(&maxCrashes, "max-crashes", envInt("SLUICE_MAX_CRASHES", poison.DefaultMaxCrashes),
		"an input in flight each time the process died this many times is dead-lettered without running again (env SLUICE_MAX_CRASHES)")
	cmd.Flags().StringVar(&tlsCert, "tls-cert", os.Getenv("SLUICE_TLS_CERT"), "PEM certificate (chain) file: the listener serves HTTPS with HTTP/2; reloaded when it changes (env SLUICE_TLS_CERT)")
	cmd.Flags().StringVar(&tlsKey, "tls-key", os.Getenv("SLUICE_TLS_KEY"), "PEM private key file of --tls-cert (env SLUICE_TLS_KEY)")
	cmd.Flags().StringVar(&retentionText, "retention", env("SLUICE_RETENTION", "720h"),
		"keep runs and input completions this long (720h = 30 days), pruned hourly; 0 keeps everything. A redelivered input older than this runs again (env SLUICE_RETENTION)")
	cmd.Flags().StringVar(&gcTargetText, "gc-target", env("SLUICE_GC_TARGET", "256MiB"),
		"let the heap grow to this size before the garbage collector runs (above it, Go's default pace), at most a quarter of the process's memory limit (cgroup or GOMEMLIMIT); 0 for Go's default pace. GOGC, when set, wins (env SLUICE_GC_TARGET)")
	limits.flags(cmd)
	ui.flags(cmd)
	return cmd
}

// writeTimeout is the listener's default write timeout: the longest an
// HTTP flow may take to answer, plus 10s.
func writeTimeout(fl []*flows.Flow) time.Duration {
	longest := 20 * time.Second
	for _, f := range fl {
		if h := f.Trigger.HTTP; h != nil {
			switch h.Mode {
			case "sync":
				longest = max(longest, f.Timeout)
			case "auto":
				longest = max(longest, h.Wait)
			}
		}
	}
	return longest + 10*time.Second
}

// webhooks returns the store's bucket notification receiver, or nil when
// its driver takes no webhooks.
func webhooks(store *storage.Store) http.Handler {
	var wr storage.WebhookReceiver
	if store.As(&wr) {
		return wr.WebhookHandler()
	}
	return nil
}

// serveOps serves the operational endpoints, and the bucket notification
// webhook when the storage has one; over TLS when certs is not nil.
// /readyz adds reloads(), the last reload's outcome, to its answer. mount,
// when not nil, adds more routes (the dashboard).
func serveOps(addr string, limits listenerLimits, write time.Duration, engine *flows.Engine, reloads func() string, reg *prometheus.Registry, hooks http.Handler, certs *certReloader,
	mount func(*http.ServeMux)) (*http.Server, string, error) {
	ln, err := limits.listen(addr)
	if err != nil {
		return nil, "", fmt.Errorf("--listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-engine.Ready():
			if err := engine.Err(); err != nil {
				http.Error(w, "not acking: "+err.Error()+"\n"+reloads(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(w, "ready\n"+reloads())
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	// The routes of http-triggered flows (a reload may add some) and the
	// runs API.
	mux.Handle("/", engine.HTTPHandler())
	if hooks != nil {
		mux.Handle("/hooks/s3", hooks)
	}
	if mount != nil {
		mount(mux)
	}
	srv := limits.server(mux, write)
	if certs != nil {
		srv.TLSConfig = certs.tlsConfig()
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		return srv, ln.Addr().String(), nil
	}
	go func() { _ = srv.Serve(ln) }()
	return srv, ln.Addr().String(), nil
}
