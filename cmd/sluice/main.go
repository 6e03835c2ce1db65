// Command sluice runs event-driven flows: YAML files that chain function
// nodes, triggered by files landing in buckets and messages on topics.
//
// With no configuration it runs on the embedded default under ./.sluice:
// a SQLite queue (queue.db), a SQLite state database (state.db) and
// buckets as folders (buckets/).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/dbident"
	"github.com/sluicehq/sluice/internal/redact"
	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/all"
	"github.com/sluicehq/sluice/state"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// exitError carries a process exit code (2: invalid flows).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }

type globals struct {
	home      string
	broker    string
	storage   string
	state     string
	logLevel  string
	logFormat string
	acceptNew bool // --accept-new-state
}

// brokerURL is --broker, else SLUICE_BROKER, else the embedded queue. (The
// environment is read here, not as the flag's default, so that --help
// never prints a URL's credentials.)
func (g *globals) brokerURL() string {
	if g.broker != "" {
		return g.broker
	}
	if v := os.Getenv("SLUICE_BROKER"); v != "" {
		return v
	}
	return "sqlite://" + filepath.Join(g.home, "queue.db")
}

// storageURL is --storage, else SLUICE_STORAGE, else the embedded folders.
func (g *globals) storageURL() string {
	if g.storage != "" {
		return g.storage
	}
	if v := os.Getenv("SLUICE_STORAGE"); v != "" {
		return v
	}
	return "fs://" + filepath.Join(g.home, "buckets")
}

// stateURL is the state database: --state, else SLUICE_STATE (read here
// so --help never prints its password), else state.db in the home.
func (g *globals) stateURL() string {
	if g.state != "" {
		return g.state
	}
	if v := os.Getenv("SLUICE_STATE"); v != "" {
		return v
	}
	return "sqlite://" + filepath.Join(g.home, "state.db")
}

// openState opens the state database (migrating its schema).
func (g *globals) openState(ctx context.Context) (*state.DB, error) {
	return state.OpenURL(ctx, g.stateURL())
}

func (g *globals) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", g.logFormat)
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// envInt is the whole number in the environment variable name, def when
// it is unset, and -1 when it is not a whole number (for the flag's
// check to refuse, naming the variable).
func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "sluice",
		Short: "Event-driven flows: files in buckets and messages on topics, through chains of function nodes",
		Long: `Sluice runs flows: YAML files with a trigger (a bucket, a topic, an HTTP
route or a schedule) and a chain of function nodes.

Without configuration everything is embedded under ./.sluice: a SQLite queue,
a SQLite state database and buckets as folders. Point --broker, --storage and
--state elsewhere (or set SLUICE_BROKER, SLUICE_STORAGE and SLUICE_STATE) to
use other backends: Kafka, S3, PostgreSQL.`,
		Example: `  sluice run examples/thumbnails          # run a flow on the embedded default
  sluice put uploads photo.jpg             # drop a file into a bucket
  sluice publish orders '{"id":"o-1"}'     # publish a message
  sluice runs --flow thumbnails            # what ran
  sluice validate examples/                # lint flow files`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.home, "home", env("SLUICE_HOME", ".sluice"), "folder of the embedded queue, state and buckets (env SLUICE_HOME)")
	pf.StringVar(&g.broker, "broker", "", "broker URL: sqlite://PATH, kafka://HOST:PORT[,HOST:PORT], amqp://USER:PASS@HOST:5672/ or mem:// (env SLUICE_BROKER; default sqlite://HOME/queue.db)")
	pf.StringVar(&g.storage, "storage", "", "storage URL: fs://DIR, s3://HOST:PORT?secure=false or mem:// (env SLUICE_STORAGE; default fs://HOME/buckets)")
	pf.StringVar(&g.state, "state", "", "state URL: sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB; PostgreSQL keeps the ledger, runs, dead letters, usage, seen objects and state machines of every process in one place (env SLUICE_STATE; default sqlite://HOME/state.db)")
	pf.StringVar(&g.logLevel, "log-level", env("SLUICE_LOG_LEVEL", "info"), "debug, info, warn or error")
	pf.StringVar(&g.logFormat, "log-format", env("SLUICE_LOG_FORMAT", "text"), "text or json")
	acceptDefault, _ := strconv.ParseBool(os.Getenv("SLUICE_ACCEPT_NEW_STATE"))
	pf.BoolVar(&g.acceptNew, "accept-new-state", acceptDefault,
		"start even though a database (queue.db, state.db, machines.db, data.db) is empty or not the one recorded beside it (PATH.sluice-id): it was emptied, deleted or replaced, and what it held is lost; without this flag Sluice refuses to start (env SLUICE_ACCEPT_NEW_STATE)")
	root.PersistentPreRun = func(*cobra.Command, []string) { dbident.SetAcceptNew(g.acceptNew) }
	root.AddCommand(runCmd(g), validateCmd(), nodesCmd(), schemaCmd(), putCmd(g), publishCmd(g), runsCmd(g), usageCmd(g), dlqCmd(g), stateCmd(g), versionCmd())
	root.AddCommand(tailCmd(g), topicsCmd(g))
	root.AddCommand(testCmd(g))
	return root
}

func main() {
	root := newRoot()
	err := root.Execute()
	if err == nil {
		return
	}
	var ee exitError
	if errors.As(err, &ee) {
		fmt.Fprintln(os.Stderr, safeLines(scrub(root, ee.err)))
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "sluice:", safeLines(scrub(root, err)))
	if strings.Contains(err.Error(), "unknown command") || strings.Contains(err.Error(), "unknown flag") {
		fmt.Fprintln(os.Stderr, "Run 'sluice --help' for usage.")
	}
	os.Exit(1)
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "sluice", version) },
	}
}

// registry is the node registry the CLI uses.
func registry() *nodes.Registry { return nodes.Global() }

// scrub returns err's text with the credentials of the broker and storage
// URLs (flags and environment) redacted, wherever a layer below quoted them.
func scrub(root *cobra.Command, err error) string {
	msg := err.Error()
	for _, raw := range []string{os.Getenv("SLUICE_BROKER"), os.Getenv("SLUICE_STORAGE"),
		root.PersistentFlags().Lookup("broker").Value.String(), root.PersistentFlags().Lookup("storage").Value.String()} {
		if raw != "" {
			msg = redact.Error(errors.New(msg), raw)
		}
	}
	return msg
}
