package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/bondkv/bondkv/bench"
)

// defaultCompareDuration is the measured time per engine of the no-argument comparison: with
// the 1 s warm-up and start-up, the three engines take about 30 s.
const defaultCompareDuration = 8 * time.Second

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	f := newPutFlags(stdout, stderr)
	f.compare = true
	f.cfg.Duration = defaultCompareDuration
	cmd := &cobra.Command{
		Use:   "kvbench",
		Short: "Benchmark bondkv against raw Pebble and raw dragonboat",
		Long: `kvbench measures bondkv's write throughput and latency, and those of the layers beneath it
measured the same way in the same run, so that the cost of each layer shows.

With no subcommand kvbench runs the default comparison (about 30 s), the same as

  kvbench put --compare --duration 8s

which measures, in turn and with the same writers, keys and values:

  pebble       raw pebble/v2 in one directory, every write synced: the baseline
  raft-single  one raw dragonboat group on --nodes NodeHosts in this process, configured
               exactly as bondkv's nodes, over an in-memory state machine
  bondkv       bondkv itself, --nodes nodes in this process

and prints each engine's throughput and latency, and their ratio to pebble's.

stdout carries only the table and, with --json, one JSON object as its last line. A progress
bar goes to stderr when stderr is a terminal (not with --json or --verbose).`,
		Args:          noArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          f.run,
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetFlagErrorFunc(flagError)
	cmd.CompletionOptions.DisableDefaultCmd = true
	f.addWorkloadFlags(cmd.Flags())
	addProfileFlag(cmd)
	cmd.AddCommand(newPutCmd(stdout, stderr))
	cmd.AddCommand(newGroupsCmd(stdout, stderr))
	cmd.AddCommand(newTxnCmd(stdout, stderr))
	return cmd
}

func newPutCmd(stdout, stderr io.Writer) *cobra.Command {
	f := newPutFlags(stdout, stderr)
	cmd := &cobra.Command{
		Use:   "put",
		Short: "Concurrent single-key puts for a duration",
		Long: `put runs --concurrency writers, each putting one random key at a time (keys user%012d, uniform
over --keys, values of --value-size random bytes) for --warmup and then --duration, and
reports the measured window: puts, puts/s, latency percentiles, errors.

With --compare it measures pebble, raft-single and bondkv in turn with the same workload and
prints each one's ratio to pebble (--engine is then not allowed).

JSON (--json, last line of stdout), one engine:
  bench, engine, nodes, concurrency, value_size, keys, seed, warmup_s, duration_s, cpus,
  ops, ops_per_sec, mean_us, p50_us, p90_us, p99_us, p999_us, max_us, errors, first_error,
  details (engine-specific: pebble's WAL fsyncs and puts per fsync, raft-single's Raft
  settings, terms and proposal retries, ...)
With --compare:
  bench, compare, baseline, results (one object as above per engine, with error if it could
  not run), ratios (engine -> ops_per_sec, p50, p99 divided by pebble's)

Exit status: 0 on success, 1 if an engine failed or no put succeeded, 2 for a bad command line.`,
		Example: `  kvbench put --engine pebble --concurrency 128
  kvbench put --engine raft-single --nodes 3 --duration 30s --json
  kvbench put --compare --value-size 1024`,
		Args:          noArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          f.run,
	}
	cmd.SetFlagErrorFunc(flagError)
	fs := cmd.Flags()
	fs.StringVar(&f.cfg.Engine, "engine", f.cfg.Engine, "engine to measure: "+strings.Join(bench.EngineNames(), ", "))
	fs.BoolVar(&f.compare, "compare", false, "measure every engine in turn and compare each to pebble")
	f.addWorkloadFlags(fs)
	return cmd
}

func flagError(cmd *cobra.Command, err error) error {
	return usageError{cmd: cmd.CommandPath(), err: err}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{cmd: cmd.CommandPath(), err: err}
	}
	return nil
}

// putFlags are the flags of a put benchmark, and where it writes.
type putFlags struct {
	cfg            bench.PutConfig
	compare        bool
	json           bool
	verbose        bool
	stdout, stderr io.Writer
}

func newPutFlags(stdout, stderr io.Writer) *putFlags {
	return &putFlags{cfg: bench.DefaultPutConfig(), stdout: stdout, stderr: stderr}
}

func (f *putFlags) addWorkloadFlags(fs *pflag.FlagSet) {
	fs.IntVar(&f.cfg.Nodes, "nodes", f.cfg.Nodes, "replicas, all in this process (raft-single and bondkv; pebble has one)")
	fs.IntVar(&f.cfg.Concurrency, "concurrency", f.cfg.Concurrency, "writers, each with one put in flight")
	fs.IntVar(&f.cfg.ValueSize, "value-size", f.cfg.ValueSize, "value size in bytes")
	fs.DurationVar(&f.cfg.Duration, "duration", f.cfg.Duration, "measured time (per engine), after the warm-up")
	fs.DurationVar(&f.cfg.Warmup, "warmup", f.cfg.Warmup, "time the writers run before measuring starts")
	fs.Int64Var(&f.cfg.Keys, "keys", f.cfg.Keys, "key space: keys are user%012d of a uniform random number below this")
	fs.IntVar(&f.cfg.Ranges, "ranges", f.cfg.Ranges, "bondkv: pre-split the key space into this many ranges before writing")
	fs.StringVar(&f.cfg.Dir, "dir", "", "keep the data under `DIR`/<engine>, which must not hold data yet\n(default: a temporary directory, removed afterwards)")
	fs.Uint64Var(&f.cfg.Seed, "seed", f.cfg.Seed, "seed of the writers' key and value generators")
	fs.BoolVar(&f.json, "json", false, "also print the result as one JSON object, the last line of stdout")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "log the engines' messages (pebble, dragonboat, bondkv) to stderr")
}

func (f *putFlags) run(cmd *cobra.Command, _ []string) error {
	ctx := cmd.Context()
	cfg := f.cfg
	if f.compare && cmd.Flags().Changed("engine") {
		return usageError{cmd: cmd.CommandPath(), err: errors.New("--engine and --compare exclude each other: --compare measures every engine")}
	}
	if f.compare {
		cfg.Engine = bench.EnginePebble // validated per engine below; the others share the rest
	}
	if err := cfg.Validate(); err != nil {
		return usageError{cmd: cmd.CommandPath(), err: err}
	}
	cfg.Logger = runLogger(f.verbose, f.stderr)
	if showProgress(f.json, f.verbose, f.stderr) {
		cfg.Progress = newProgressBar(f.stderr).update
	}

	if f.compare {
		c, err := bench.RunPutComparison(ctx, cfg, bench.EngineNames())
		if err != nil {
			return err
		}
		if err := c.WriteTable(f.stdout); err != nil {
			return err
		}
		if f.json {
			if err := bench.WriteJSON(f.stdout, c); err != nil {
				return err
			}
		}
		var failed []string
		for _, r := range c.Results {
			if r.Error != "" || r.Ops == 0 {
				failed = append(failed, r.Engine)
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("no measurement for %s (see the table)", strings.Join(failed, ", "))
		}
		return nil
	}

	r, err := bench.RunPut(ctx, cfg)
	if err != nil {
		return err
	}
	if err := bench.WriteTable(f.stdout, []*bench.Result{r}); err != nil {
		return err
	}
	if f.json {
		if err := bench.WriteJSON(f.stdout, r); err != nil {
			return err
		}
	}
	switch {
	case r.Ops == 0 && r.Errors > 0:
		return fmt.Errorf("%s: every measured put failed (%d; first error: %s)", r.Engine, r.Errors, r.FirstError)
	case r.Ops == 0:
		return fmt.Errorf("%s: no put finished within the measured window (--duration %v)", r.Engine, cfg.Duration)
	}
	return nil
}

// runLogger is the logger of a run: Info and above on stderr with --verbose, else nothing.
func runLogger(verbose bool, stderr io.Writer) *slog.Logger {
	if verbose {
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// showProgress reports whether a run draws a progress bar: only on a terminal, and never with
// --json or --verbose (whose output it would garble).
func showProgress(json, verbose bool, stderr io.Writer) bool {
	return !json && !verbose && isTerminal(stderr)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
