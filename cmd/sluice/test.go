package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/flowtest"
)

func testCmd(g *globals) *cobra.Command {
	var verbose, asJSON bool
	var run string
	var parallel int
	cmd := &cobra.Command{
		Use:   "test [PATH...]",
		Short: "Run the flow tests (*_test.yaml) beside the flows",
		Long: `Test runs flow test files: YAML files named NAME_test.yaml beside the flows
they test. Each names a flow, and cases: an input (a message, an object
from a fixture file, an HTTP request) and what must follow (the final
payload, messages published, objects written, rows, state machine states,
a dead letter, the HTTP response). See README.md's "Testing flows".

Every case runs in this process on the real engine, over a mem:// broker
and storage and a throwaway state folder, with the completion ledger on;
nothing outside is touched (only the flow's own calls, such as http.call,
reach out). PATH is a test file, or a folder searched recursively (also
written dir/...); the current folder when none is given.

Output is go test's: failures with the test file's line:col of each unmet
expectation, an ok or FAIL line per file; -v adds passes and skips. The
exit code is 1 when a case fails, 2 when a test file is invalid. Cases
whose flow needs ONNX Runtime, or a file the test file requires (such as
a WebAssembly module to build), are skipped while it is missing, unless
CI is set to true. --broker, --storage, --state and --home are not used:
nothing of a case outlives it.`,
		Example: `  sluice test examples
  sluice test ./flows/...
  sluice test -v --run 'pay|ship' examples/orders
  sluice test --json examples > results.jsonl`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"."}
			}
			opts := flowtest.Options{Parallel: parallel}
			if run != "" {
				re, err := regexp.Compile(run)
				if err != nil {
					return fmt.Errorf("--run: %w", err)
				}
				opts.Run = re
			}
			opts.CI, _ = strconv.ParseBool(os.Getenv("CI"))
			if cmd.Flags().Changed("log-level") {
				var level slog.Level
				if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
					return fmt.Errorf("--log-level: %w", err)
				}
				opts.LogLevel = level
			}
			files, err := flowtest.Find(args)
			if err != nil {
				return err
			}
			// Interrupted, the cases in flight end and clean up their
			// folders (in /dev/shm: memory) before the process exits.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep := &flowtest.Reporter{W: cmd.OutOrStdout(), Verbose: verbose, JSON: asJSON}
			code, count := 0, map[string]int{}
			for _, f := range files {
				if ctx.Err() != nil {
					return exitError{1, errors.New("interrupted")}
				}
				res := flowtest.RunFile(ctx, f, opts, rep.Case)
				rep.File(res)
				switch {
				case res.Err != nil:
					code = max(code, 2)
					count["invalid"]++
				case res.Failed():
					code = max(code, 1)
				}
				for _, c := range res.Cases {
					count[c.Result]++
				}
			}
			if code != 0 {
				if !asJSON {
					fmt.Fprintln(cmd.OutOrStdout(), "FAIL")
				}
				return exitError{code, fmt.Errorf("%d case(s) failed, %d passed, %d skipped; %d test file(s) could not run",
					count[flowtest.Fail], count[flowtest.Pass], count[flowtest.Skip], count["invalid"])}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every case, passes and skips too, with its engine log (failures always print theirs; warnings and errors unless --log-level says otherwise)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON event per line, as go test -json does")
	cmd.Flags().StringVar(&run, "run", "", "run only the cases whose name matches this regexp")
	cmd.Flags().IntVarP(&parallel, "parallel", "p", 0, "cases of a file run at once, each on its own engine (0: twice the CPUs)")
	return cmd
}
