package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bondkv/bondkv/bench"
)

func newTxnCmd(stdout, stderr io.Writer) *cobra.Command {
	f := &txnFlags{cfg: bench.DefaultTxnConfig(), stdout: stdout, stderr: stderr}
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "Read-modify-write transactions (1PC and 2PC) against plain puts",
		Long: `txn measures bondkv's transactions. It starts --nodes nodes in this process as kvbench put
does, pre-splits the key space into --ranges ranges of --keys keys each (range i holds the
keys user%012d of [i*keys, (i+1)*keys)), and measures on that cluster, in turn, with
--concurrency writers each with one operation in flight, for --warmup and then --duration:

  put      plain single-key db.Put of keys uniform over the whole key space: the baseline
  txn_1pc  db.Update transactions reading (tx.Get) then writing (tx.Put) --keys-per-txn
           distinct keys, all in one range drawn uniformly: they commit with one Raft
           proposal (1PC)
  txn_2pc  (--ranges-per-txn 2 or more) the same transactions with their keys in
           --ranges-per-txn distinct ranges, each holding at least one: two-phase commit

Operations go round-robin to the nodes. It reports each phase's operations per second (for
transactions, commits per second), latency percentiles (of the whole Update, retries
included), errors, bondkv's transaction counters over the measured window (commits by path,
conflicts retried, aborts, abort rate = conflicts / attempts), where a transaction's time
went (its reads, then its commit), and the Raft entries proposed per operation; then the
ratios txn_1pc / put and txn_2pc / txn_1pc and the goals they aim at (at least 0.9 and 0.5).

JSON (--json, last line of stdout):
  bench ("txn"), engine, nodes, concurrency, value_size, keys_per_range, ranges,
  keys_per_txn, ranges_per_txn, seed, warmup_s, duration_s, cpus,
  results (one object per phase: phase, the fields of kvbench put's JSON, raft_entries,
  commands_per_raft_entry, and for transactions txn: {commits_1pc, commits_2pc, conflicts,
  aborted, attempts, abort_rate, resolved, read_p50_us, read_p99_us, commit_p50_us,
  commit_p99_us}),
  ratios (txn_1pc_over_put, txn_2pc_over_txn_1pc -> ops_per_sec, p50, p99),
  goals ([{ratio, min, measured, met}]), details (the cluster's splits, moves, ranges, ...,
  leader_settle_s and leaders_balanced: the wait before the first phase until the placement
  driver had no leadership left to move, which would otherwise stall the put phase)

Exit status: 0 on success (a missed goal included), 1 if the benchmark failed or a phase
completed nothing, 2 for a bad command line.`,
		Example: `  kvbench txn
  kvbench txn --ranges-per-txn 2 --json
  kvbench txn --keys-per-txn 8 --ranges-per-txn 4 --keys 1000 --duration 10s`,
		Args:          noArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          f.run,
	}
	cmd.SetFlagErrorFunc(flagError)
	fs := cmd.Flags()
	fs.IntVar(&f.cfg.KeysPerTxn, "keys-per-txn", f.cfg.KeysPerTxn, "distinct keys each transaction reads and writes")
	fs.IntVar(&f.cfg.RangesPerTxn, "ranges-per-txn", f.cfg.RangesPerTxn, "ranges each transaction's keys span: 1 = one-phase commit only, 2 or more adds a two-phase commit phase")
	fs.IntVar(&f.cfg.Ranges, "ranges", f.cfg.Ranges, "pre-split the key space into this many ranges (0 = --ranges-per-txn)")
	fs.Int64Var(&f.cfg.KeysPerRange, "keys", f.cfg.KeysPerRange, "keys in each range")
	fs.IntVar(&f.cfg.Nodes, "nodes", f.cfg.Nodes, "nodes, all in this process")
	fs.IntVar(&f.cfg.Concurrency, "concurrency", f.cfg.Concurrency, "writers, each with one put or transaction in flight")
	fs.IntVar(&f.cfg.ValueSize, "value-size", f.cfg.ValueSize, "value size in bytes")
	fs.DurationVar(&f.cfg.Duration, "duration", f.cfg.Duration, "measured time per phase, after the warm-up")
	fs.DurationVar(&f.cfg.Warmup, "warmup", f.cfg.Warmup, "time each phase runs before measuring starts")
	fs.StringVar(&f.cfg.Dir, "dir", "", "keep the data under `DIR`/txn, which must not hold data yet\n(default: a temporary directory, removed afterwards)")
	fs.Uint64Var(&f.cfg.Seed, "seed", f.cfg.Seed, "seed of the writers' key and value generators")
	fs.BoolVar(&f.json, "json", false, "also print the result as one JSON object, the last line of stdout")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "log the nodes' messages (pebble, dragonboat, bondkv) to stderr")
	return cmd
}

// txnFlags are the flags of a transaction benchmark, and where it writes.
type txnFlags struct {
	cfg            bench.TxnConfig
	json           bool
	verbose        bool
	stdout, stderr io.Writer
}

func (f *txnFlags) run(cmd *cobra.Command, _ []string) error {
	cfg := f.cfg
	if err := cfg.Validate(); err != nil {
		return usageError{cmd: cmd.CommandPath(), err: err}
	}
	cfg.Logger = runLogger(f.verbose, f.stderr)
	if showProgress(f.json, f.verbose, f.stderr) {
		cfg.Progress = newProgressBar(f.stderr).update
	}
	r, err := bench.RunTxn(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	if err := bench.WriteTxnTable(f.stdout, r); err != nil {
		return err
	}
	if f.json {
		if err := bench.WriteJSON(f.stdout, r); err != nil {
			return err
		}
	}
	var empty []string
	for _, p := range r.Results {
		if p.Ops == 0 {
			empty = append(empty, p.Phase)
		}
	}
	if len(empty) > 0 {
		return fmt.Errorf("no operation completed in the measured window of %s (see the table)", strings.Join(empty, ", "))
	}
	return nil
}
