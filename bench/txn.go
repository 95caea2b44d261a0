package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/bondkv/bondkv"
)

// Phases of a transaction benchmark, in the order they run.
const (
	// PhasePut is the baseline: single-key db.Put, as kvbench put measures it.
	PhasePut = "put"
	// PhaseTxn1PC is read-modify-write transactions of KeysPerTxn keys in one range each, which
	// commit with one Raft proposal.
	PhaseTxn1PC = "txn_1pc"
	// PhaseTxn2PC is the same transactions with their keys in RangesPerTxn ranges, which commit
	// with two-phase commit. It runs only when RangesPerTxn is at least 2.
	PhaseTxn2PC = "txn_2pc"
)

// Keys of TxnResult.Ratios.
const (
	RatioTxn1PCOverPut    = PhaseTxn1PC + "_over_" + PhasePut
	RatioTxn2PCOverTxn1PC = PhaseTxn2PC + "_over_" + PhaseTxn1PC
)

// TxnConfig describes a transaction benchmark. It starts one bondkv cluster exactly as kvbench
// put does (Nodes nodes in this process), pre-splits the key space into Ranges ranges of
// KeysPerRange keys each, and measures on it, one after the other, each phase for Warmup (not
// measured) and then Duration, with Concurrency writers each with one operation in flight:
//
//   - put: single-key db.Put of keys drawn uniformly from the whole key space;
//   - txn_1pc: db.Update transactions that read (tx.Get) and then write (tx.Put) KeysPerTxn
//     distinct keys, all in one range drawn uniformly;
//   - txn_2pc, if RangesPerTxn ≥ 2: the same with the keys in RangesPerTxn distinct ranges drawn
//     uniformly, each holding at least one of them and the rest spread uniformly over them.
//
// Operations go round-robin to the nodes, as kvbench put's do (the node an Update runs on
// coordinates its commit). Before the first phase every range's first key is written through
// every node (the new ranges have leaders and every node has them in its cache), and the run
// waits until the placement driver has no leadership left to balance.
type TxnConfig struct {
	// Nodes is the number of nodes, all in this process.
	Nodes int
	// Concurrency is the number of writers, each with one put or transaction in flight.
	Concurrency int
	// ValueSize is the size of every value written, in bytes (0 to base.MaxValueSize).
	ValueSize int
	// Duration is how long each phase is measured, after its warm-up.
	Duration time.Duration
	// Warmup is how long each phase runs before measuring starts (0 = none).
	Warmup time.Duration
	// KeysPerRange is the number of keys in each range: range i (from 0) holds the keys
	// "user%012d" of [i×KeysPerRange, (i+1)×KeysPerRange).
	KeysPerRange int64
	// Ranges is the number of ranges the key space is pre-split into (0 = RangesPerTxn). Every
	// phase runs on all of them.
	Ranges int
	// KeysPerTxn is the number of distinct keys each transaction reads and writes.
	KeysPerTxn int
	// RangesPerTxn is the number of ranges each transaction of the txn_2pc phase spans; 1
	// measures only the txn_1pc phase.
	RangesPerTxn int
	// Dir, if set, holds the data under Dir/txn (which must not hold anything yet) and is kept.
	// If empty, the data goes to a fresh temporary directory removed afterwards.
	Dir string
	// Seed seeds the writers' generators: writer i uses the stream (Seed, i) for the key a put
	// writes or a transaction's first key, and a transaction's other keys follow from that one.
	Seed uint64
	// Logger receives the nodes' logs. nil = discard.
	Logger *slog.Logger
	// Progress, if set, is told about the pre-split and, about five times a second, about the
	// running phase (Progress.Engine is the phase's name), once more with Done set at its end.
	Progress func(Progress)
}

// DefaultTxnConfig is the configuration kvbench txn starts from.
func DefaultTxnConfig() TxnConfig {
	p := DefaultPutConfig()
	return TxnConfig{
		Nodes:        p.Nodes,
		Concurrency:  p.Concurrency,
		ValueSize:    p.ValueSize,
		Duration:     5 * time.Second,
		Warmup:       p.Warmup,
		KeysPerRange: p.Keys,
		KeysPerTxn:   4,
		RangesPerTxn: 1,
		Seed:         p.Seed,
	}
}

// Limits a transaction must stay within under bondkv's default TxnOptions: MaxKeys (10,000)
// counts a key read and then written twice, MaxBytes (16 MiB) bounds the keys and values
// written.
const (
	maxKeysPerTxn  = 10_000 / 2
	maxBytesPerTxn = 16 << 20
	maxRanges      = 100_000
)

// Validate reports every problem with c at once.
func (c TxnConfig) Validate() error {
	var errs []error
	errs = append(errs, checkWorkload(c.Nodes, c.Concurrency, c.ValueSize, c.Duration, c.Warmup)...)
	if c.KeysPerTxn < 1 || c.KeysPerTxn > maxKeysPerTxn {
		errs = append(errs, fmt.Errorf("keys per transaction must be between 1 and %d, got %d", maxKeysPerTxn, c.KeysPerTxn))
	} else if c.ValueSize >= 0 && c.KeysPerTxn*(keyLen+c.ValueSize) > maxBytesPerTxn {
		errs = append(errs, fmt.Errorf("keys per transaction × (%d-byte key + value size) must be at most %d bytes, got %d",
			keyLen, maxBytesPerTxn, c.KeysPerTxn*(keyLen+c.ValueSize)))
	}
	if c.RangesPerTxn < 1 || (c.KeysPerTxn >= 1 && c.RangesPerTxn > c.KeysPerTxn) {
		errs = append(errs, fmt.Errorf("ranges per transaction must be between 1 and keys per transaction (%d), got %d", c.KeysPerTxn, c.RangesPerTxn))
	}
	switch {
	case c.Ranges < 0 || c.Ranges > maxRanges:
		errs = append(errs, fmt.Errorf("ranges must be between 0 and %d, got %d", maxRanges, c.Ranges))
	case c.Ranges > 0 && c.Ranges < c.RangesPerTxn:
		errs = append(errs, fmt.Errorf("ranges (%d) must be at least ranges per transaction (%d)", c.Ranges, c.RangesPerTxn))
	}
	if c.KeysPerRange < int64(max(c.KeysPerTxn, 1)) {
		errs = append(errs, fmt.Errorf("keys per range must be at least keys per transaction (%d), got %d", c.KeysPerTxn, c.KeysPerRange))
	} else if r := int64(max(c.ranges(), 1)); r <= maxRanges && c.KeysPerRange > maxKeys/r {
		errs = append(errs, fmt.Errorf("keys per range × ranges must be below %d, got %d × %d", int64(maxKeys), c.KeysPerRange, r))
	}
	return errors.Join(errs...)
}

// ranges is the number of ranges the key space is split into.
func (c TxnConfig) ranges() int {
	if c.Ranges == 0 {
		return c.RangesPerTxn
	}
	return c.Ranges
}

// keys is the size of the whole key space.
func (c TxnConfig) keys() int64 { return c.KeysPerRange * int64(c.ranges()) }

// phaseConfig is the put runner's configuration for one phase: its name labels the progress.
func (c TxnConfig) phaseConfig(phase string) PutConfig {
	return PutConfig{Engine: phase, Nodes: c.Nodes, Concurrency: c.Concurrency, ValueSize: c.ValueSize,
		Duration: c.Duration, Warmup: c.Warmup, Keys: c.keys(), Seed: c.Seed, Logger: c.Logger,
		Progress: c.Progress}
}

// TxnResult is a transaction benchmark's measurement; its JSON form is kvbench txn's
// machine-readable output.
type TxnResult struct {
	Bench        string  `json:"bench"`  // "txn"
	Engine       string  `json:"engine"` // "bondkv"
	Nodes        int     `json:"nodes"`
	Concurrency  int     `json:"concurrency"`
	ValueSize    int     `json:"value_size"`
	KeysPerRange int64   `json:"keys_per_range"`
	Ranges       int     `json:"ranges"`
	KeysPerTxn   int     `json:"keys_per_txn"`
	RangesPerTxn int     `json:"ranges_per_txn"`
	Seed         uint64  `json:"seed"`
	WarmupS      float64 `json:"warmup_s"`
	DurationS    float64 `json:"duration_s"`
	CPUs         int     `json:"cpus"` // GOMAXPROCS

	// Results holds one measurement per phase, in the order they ran.
	Results []*TxnPhase `json:"results"`
	// Ratios maps RatioTxn1PCOverPut and RatioTxn2PCOverTxn1PC (with two phases of
	// transactions) to the first phase's figures divided by the second's. A ratio is absent if
	// either phase measured nothing.
	Ratios map[string]Ratios `json:"ratios,omitempty"`
	// Goals are the throughput ratios the transactions aim at, and whether this run met them.
	Goals []Goal `json:"goals"`
	// Details are bondkvEngine's figures for the whole run (splits and moves since the
	// pre-split, Raft entries, range count, ...), and leader_settle_s, how long the run waited
	// for the leaderships to be balanced before the first phase, and leaders_balanced, whether
	// they were.
	Details map[string]any `json:"details,omitempty"`
}

// TxnPhase is one phase's measurement. Its Result fields are those of kvbench put (bench is
// "put" or "txn", engine "bondkv", keys the whole key space); for transactions, ops counts the
// transactions that started after the warm-up and committed within the window, and the
// latencies are those of the whole db.Update call, retries included.
type TxnPhase struct {
	Phase string `json:"phase"`
	Result
	// Txn is the transactions' counters, absent for the put phase.
	Txn *TxnCounts `json:"txn,omitempty"`
	// RaftEntries is the number of Raft entries the nodes proposed during the measured window
	// (every range), and CommandsPerRaftEntry the writes they carried per entry (the batching
	// factor; a commit, a prepare, a commit flip and an intent resolution are one write each).
	RaftEntries          uint64  `json:"raft_entries"`
	CommandsPerRaftEntry float64 `json:"commands_per_raft_entry"`
}

// TxnCounts are a phase's transaction counters: the sum over the nodes of the change of
// bondkv's TxnStats during the measured window, and where a transaction's time went.
type TxnCounts struct {
	Commits1PC uint64 `json:"commits_1pc"`
	Commits2PC uint64 `json:"commits_2pc"`
	// Conflicts counts attempts that conflicted and ran again; Aborted, transactions that
	// ended with an error.
	Conflicts uint64 `json:"conflicts"`
	Aborted   uint64 `json:"aborted"`
	// Attempts is Commits1PC + Commits2PC + Conflicts + Aborted (an attempt that conflicted and
	// then gave up counts twice; with no MaxAttempts that happens only when its context ends),
	// and AbortRate is Conflicts / Attempts.
	Attempts  uint64  `json:"attempts"`
	AbortRate float64 `json:"abort_rate"`
	// Resolved counts the transactions whose intents the nodes resolved (after a two-phase
	// commit, in the background).
	Resolved uint64 `json:"resolved"`
	// Read is the time of the transaction's function in its last attempt (the Gets and Puts;
	// the Gets are reads with a ReadIndex round each), Commit the time from its end until
	// Update returned (the commit's proposals), over the transactions counted in ops.
	ReadP50Us   float64 `json:"read_p50_us"`
	ReadP99Us   float64 `json:"read_p99_us"`
	CommitP50Us float64 `json:"commit_p50_us"`
	CommitP99Us float64 `json:"commit_p99_us"`
}

// Goal is a throughput ratio the benchmark aims at.
type Goal struct {
	// Ratio is a key of TxnResult.Ratios; its ops_per_sec should be at least Min.
	Ratio    string  `json:"ratio"`
	Min      float64 `json:"min"`
	Measured float64 `json:"measured"`
	Met      bool    `json:"met"`
}

// RunTxn runs the transaction benchmark of cfg. An error means no result: a bad configuration,
// a cluster that failed to start, split or close, or ctx cancelled. Failed operations are not
// errors; they are counted in the result.
func RunTxn(ctx context.Context, cfg TxnConfig) (res *TxnResult, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Ranges = cfg.ranges()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dir, cleanup, err := engineDir(cfg.Dir, "txn")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := cleanup(); cerr != nil && err == nil {
			res, err = nil, cerr
		}
	}()
	e := &bondkvEngine{}
	openErr := e.Open(ctx, EngineConfig{Dir: dir, Nodes: cfg.Nodes, Logger: cfg.Logger,
		Ranges: cfg.Ranges, Keys: cfg.keys(), Progress: cfg.Progress})
	defer func() {
		if cerr := e.Close(); cerr != nil && err == nil {
			res, err = nil, fmt.Errorf("close: %w", cerr)
		}
	}()
	if openErr != nil {
		return nil, fmt.Errorf("open: %w", openErr)
	}
	if err := touchRanges(ctx, e, cfg); err != nil {
		return nil, err
	}
	settleStart := time.Now()
	balanced := settleLeaders(ctx, e)
	settleS := round2(time.Since(settleStart).Seconds())
	// Each node's replicas, listed once: listing them checksums every replica, which a
	// measured window should not pay for.
	replicas := make([][]uint64, len(e.nodes))
	for i, n := range e.nodes {
		replicas[i] = mustLocalRanges(n)
	}

	res = newTxnResult(cfg)
	phases := []string{PhasePut, PhaseTxn1PC}
	if cfg.RangesPerTxn > 1 {
		phases = append(phases, PhaseTxn2PC)
	}
	for _, phase := range phases {
		p, err := runTxnPhase(ctx, cfg, e, replicas, phase)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", phase, err)
		}
		res.Results = append(res.Results, p)
	}
	res.compare()
	res.Details = e.Details()
	res.Details["leaders_balanced"] = balanced
	res.Details["leader_settle_s"] = settleS
	return res, nil
}

func newTxnResult(cfg TxnConfig) *TxnResult {
	return &TxnResult{
		Bench:        "txn",
		Engine:       EngineBondKV,
		Nodes:        cfg.Nodes,
		Concurrency:  cfg.Concurrency,
		ValueSize:    cfg.ValueSize,
		KeysPerRange: cfg.KeysPerRange,
		Ranges:       cfg.Ranges,
		KeysPerTxn:   cfg.KeysPerTxn,
		RangesPerTxn: cfg.RangesPerTxn,
		Seed:         cfg.Seed,
		WarmupS:      cfg.Warmup.Seconds(),
		DurationS:    cfg.Duration.Seconds(),
		CPUs:         runtime.GOMAXPROCS(0),
	}
}

// touchRanges writes the first key of every range through every node, retrying each write
// until it succeeds: the ranges the pre-split just made have then elected their leaders and
// every node knows where they are, so the first phase is not measured waiting for that.
func touchRanges(ctx context.Context, e *bondkvEngine, cfg TxnConfig) error {
	ctx, cancel := context.WithTimeout(ctx, raftReadyTimeout)
	defer cancel()
	work := make(chan []byte)
	errs := make([]error, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range cfg.Concurrency {
		wg.Go(func() {
			for key := range work {
				for _, db := range e.nodes {
					for {
						err := db.Put(ctx, key, nil)
						if err == nil {
							break
						}
						if ctx.Err() != nil {
							errs[i] = fmt.Errorf("ranges not ready: write %s: %w", key, err)
							return
						}
						select {
						case <-time.After(10 * time.Millisecond):
						case <-ctx.Done():
						}
					}
				}
			}
		})
	}
	for i := range cfg.Ranges {
		select {
		case work <- appendKey(nil, int64(i)*cfg.KeysPerRange):
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}

// leaderSettleTimeout bounds settleLeaders.
const leaderSettleTimeout = 15 * time.Second

// settleLeaders waits, up to leaderSettleTimeout, until the placement driver has no leadership
// to move for balance: until no node leads two ranges more than another (its rule, in
// shard/placement.go), as node 1 sees the leaders. Soon after a cluster starts the driver
// moves one, and the writes in flight to that range then stall for seconds (ErrAmbiguous
// after a proposal timeout): left to happen during the first phase, it would depress that
// phase alone. It reports whether the leaders were balanced.
func settleLeaders(ctx context.Context, e *bondkvEngine) bool {
	if len(e.nodes) < 2 {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, leaderSettleTimeout)
	defer cancel()
	in := e.nodes[0].Inspect()
	for {
		if ds, err := in.Ranges(ctx); err == nil {
			led := make([]int, len(e.nodes)+1) // by node ID, 1..len(e.nodes)
			known := true
			for _, d := range ds {
				id, ok := in.RangeLeader(uint64(d.RangeID))
				if !ok || id < 1 || int(id) >= len(led) {
					known = false
					break
				}
				led[id]++
			}
			if known && slices.Max(led[1:])-slices.Min(led[1:]) < 2 {
				return true
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return false
		}
	}
}

// runTxnPhase measures one phase on the open cluster e with put's runner: a transaction phase
// hands it a txnWorkload, whose Put runs one transaction.
func runTxnPhase(ctx context.Context, cfg TxnConfig, e *bondkvEngine, replicas [][]uint64, phase string) (*TxnPhase, error) {
	pc := cfg.phaseConfig(phase)
	start := time.Now() // runWriters' own start is a moment later: the window is the same to µs
	from := start.Add(pc.Warmup)
	to := from.Add(pc.Duration)
	var op Engine = e
	var w *txnWorkload
	if phase != PhasePut {
		rangesPerTxn := 1
		if phase == PhaseTxn2PC {
			rangesPerTxn = cfg.RangesPerTxn
		}
		w = &txnWorkload{bondkvEngine: e, cfg: cfg, rangesPerTxn: rangesPerTxn, from: from, to: to}
		op = w
	}

	// The cluster's counters when the window opens and when it closes.
	atFrom, atTo := make(chan clusterCounters, 1), make(chan clusterCounters, 1)
	t1 := time.AfterFunc(time.Until(from), func() { atFrom <- e.counters(replicas) })
	t2 := time.AfterFunc(time.Until(to), func() { atTo <- e.counters(replicas) })
	defer t1.Stop()
	defer t2.Stop()

	m := runWriters(ctx, op, pc)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	// The writers stop once the window has closed: both timers have fired or are firing.
	c0, c1 := <-atFrom, <-atTo

	r := newResult(pc)
	r.setMeasurement(pc, m)
	r.Engine = EngineBondKV
	if phase != PhasePut {
		r.Bench = "txn"
	}
	p := &TxnPhase{Phase: phase, Result: *r}
	p.RaftEntries = c1.entries - c0.entries
	if p.RaftEntries > 0 {
		p.CommandsPerRaftEntry = round2(float64(c1.commands-c0.commands) / float64(p.RaftEntries))
	}
	if w != nil {
		p.Txn = w.counts(c0.txn, c1.txn)
	}
	return p, nil
}

// clusterCounters are the nodes' counters summed.
type clusterCounters struct {
	txn               bondkv.TxnStats
	entries, commands uint64 // Raft entries proposed and the writes they carried, every range
}

// counters sums the nodes' counters, those of Raft proposals over replicas (each node's ranges).
func (e *bondkvEngine) counters(replicas [][]uint64) clusterCounters {
	var c clusterCounters
	for i, n := range e.nodes {
		s := n.Inspect().TxnStats()
		c.txn.Commits1PC += s.Commits1PC
		c.txn.Commits2PC += s.Commits2PC
		c.txn.CommitsReadOnly += s.CommitsReadOnly
		c.txn.Conflicts += s.Conflicts
		c.txn.Aborted += s.Aborted
		c.txn.Resolved += s.Resolved
		for _, r := range replicas[i] {
			ps := n.Inspect().RangeProposalStats(r)
			c.entries += ps.Entries
			c.commands += ps.Commands
		}
	}
	return c
}

// txnWorkload runs a transaction where the put runner's writers put a key: it is the
// bondkvEngine but for Put, and lets the put and transaction phases be measured by the same
// runner.
type txnWorkload struct {
	*bondkvEngine
	cfg          TxnConfig
	rangesPerTxn int
	// from and to bound the measured window; read and commit record only the transactions
	// inside it.
	from, to     time.Time
	mu           sync.Mutex
	read, commit Histogram
}

// Put runs one read-modify-write transaction on the next node. key is the writer's draw: the
// transaction's first key, from which its other keys follow (txnKeys). Each key's new value is
// value, its first byte one more than the first byte of the value read, if any.
func (w *txnWorkload) Put(ctx context.Context, key, value []byte) error {
	keys := txnKeys(w.cfg.KeysPerRange, w.cfg.Ranges, w.cfg.KeysPerTxn, w.rangesPerTxn, w.cfg.Seed, keyNumber(key))
	i := w.next.Add(1) % uint64(len(w.nodes))
	var fnStart, fnEnd time.Time
	t0 := time.Now()
	err := w.nodes[i].Update(ctx, func(tx *bondkv.Txn) error {
		fnStart = time.Now()
		for _, k := range keys {
			old, err := tx.Get(k)
			if err != nil && !errors.Is(err, bondkv.ErrNotFound) {
				return err
			}
			if len(old) > 0 && len(value) > 0 {
				value[0] = old[0] + 1
			}
			if err := tx.Put(k, value); err != nil { // Put copies value
				return err
			}
		}
		fnEnd = time.Now()
		return nil
	})
	t1 := time.Now()
	if err != nil {
		return fmt.Errorf("via node %d: %w", i+1, err)
	}
	if !t0.Before(w.from) && !t1.After(w.to) {
		w.mu.Lock()
		w.read.Record(fnEnd.Sub(fnStart))
		w.commit.Record(t1.Sub(fnEnd))
		w.mu.Unlock()
	}
	return nil
}

// counts are the phase's transaction counters from the cluster's at the window's ends. It is
// called once the writers have stopped.
func (w *txnWorkload) counts(s0, s1 bondkv.TxnStats) *TxnCounts {
	c := &TxnCounts{
		Commits1PC: s1.Commits1PC - s0.Commits1PC,
		Commits2PC: s1.Commits2PC - s0.Commits2PC,
		Conflicts:  s1.Conflicts - s0.Conflicts,
		Aborted:    s1.Aborted - s0.Aborted,
		Resolved:   s1.Resolved - s0.Resolved,
	}
	c.Attempts = c.Commits1PC + c.Commits2PC + c.Conflicts + c.Aborted
	if c.Attempts > 0 {
		c.AbortRate = ratio(float64(c.Conflicts), float64(c.Attempts))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c.ReadP50Us, c.ReadP99Us = micros(w.read.Percentile(50)), micros(w.read.Percentile(99))
	c.CommitP50Us, c.CommitP99Us = micros(w.commit.Percentile(50)), micros(w.commit.Percentile(99))
	return c
}

// keyNumber is n of a key "user%012d" made by appendKey.
func keyNumber(key []byte) int64 {
	var n int64
	for _, c := range key[len("user"):] {
		n = n*10 + int64(c-'0')
	}
	return n
}

// txnKeys returns the keys of one transaction: perTxn distinct keys in exactly spanned ranges
// of the ranges×perRange key space (range i holds [i×perRange, (i+1)×perRange)). first is the
// first key; the other spanned ranges are drawn uniformly among the rest, each gets one key,
// and the remaining keys go to spanned ranges drawn uniformly; every key is uniform within its
// range. The draws are seeded with (seed, first), so a transaction follows from its first key.
// It needs 1 <= spanned <= min(perTxn, ranges) and perTxn <= perRange.
func txnKeys(perRange int64, ranges, perTxn, spanned int, seed uint64, first int64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, uint64(first)))
	r0 := first / perRange
	spans := []int64{r0}
	// The others: a uniform subset of spanned-1 of the ranges-1 other ranges (Floyd's
	// algorithm over their indexes, range r0 left out).
	others := make(map[int64]bool, spanned-1)
	for j := int64(ranges - spanned); j < int64(ranges-1); j++ {
		t := rng.Int64N(j + 1)
		if others[t] {
			t = j
		}
		others[t] = true
		if t >= r0 {
			t++ // skip r0
		}
		spans = append(spans, t)
	}
	nums := []int64{first}
	seen := map[int64]bool{first: true}
	for len(nums) < perTxn {
		var r int64
		if len(nums) < spanned {
			r = spans[len(nums)] // one key in every spanned range first
		} else {
			r = spans[rng.IntN(spanned)]
		}
		if n := r*perRange + rng.Int64N(perRange); !seen[n] {
			seen[n] = true
			nums = append(nums, n)
		}
	}
	keys := make([][]byte, len(nums))
	for i, n := range nums {
		keys[i] = appendKey(make([]byte, 0, keyLen), n)
	}
	return keys
}

// goals are the throughput ratios transactions aim at.
var txnGoals = []Goal{
	{Ratio: RatioTxn1PCOverPut, Min: 0.9},
	{Ratio: RatioTxn2PCOverTxn1PC, Min: 0.5},
}

// compare fills Ratios and Goals from Results.
func (r *TxnResult) compare() {
	byPhase := make(map[string]*TxnPhase)
	for _, p := range r.Results {
		byPhase[p.Phase] = p
	}
	for _, q := range []struct{ name, phase, base string }{
		{RatioTxn1PCOverPut, PhaseTxn1PC, PhasePut},
		{RatioTxn2PCOverTxn1PC, PhaseTxn2PC, PhaseTxn1PC},
	} {
		a, b := byPhase[q.phase], byPhase[q.base]
		if a == nil || b == nil || a.Ops == 0 || b.Ops == 0 {
			continue
		}
		if r.Ratios == nil {
			r.Ratios = make(map[string]Ratios)
		}
		r.Ratios[q.name] = Ratios{
			OpsPerSec: ratio(a.OpsPerSec, b.OpsPerSec),
			P50:       ratio(a.P50Us, b.P50Us),
			P99:       ratio(a.P99Us, b.P99Us),
		}
	}
	r.Goals = []Goal{}
	for _, g := range txnGoals {
		if q, ok := r.Ratios[g.Ratio]; ok {
			g.Measured = q.OpsPerSec
			g.Met = q.OpsPerSec >= g.Min
			r.Goals = append(r.Goals, g)
		}
	}
}

// WriteTxnTable writes one line per phase, aligned for a terminal, then the ratios and goals.
func WriteTxnTable(w io.Writer, r *TxnResult) error {
	fmt.Fprintf(w, "nodes %d, writers %d, value size %dB, ranges %d × keys %d; transactions: keys %d in ranges %d\n\n",
		r.Nodes, r.Concurrency, r.ValueSize, r.Ranges, r.KeysPerRange, r.KeysPerTxn, r.RangesPerTxn)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-7s\tops\tops/s\tp50\tp99\tmax\terrors\t1PC\t2PC\tconflicts\tabort rate\tread p50\tcommit p50\tcpu/op\tentries/op\t\n", "phase")
	for _, p := range r.Results {
		fmt.Fprintf(tw, "%-7s\t%d\t%.0f\t%s\t%s\t%s\t%d\t", p.Phase, p.Ops, p.OpsPerSec,
			fmtMicros(p.P50Us), fmtMicros(p.P99Us), fmtMicros(p.MaxUs), p.Errors)
		if t := p.Txn; t != nil {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%.2f%%\t%s\t%s\t", t.Commits1PC, t.Commits2PC, t.Conflicts,
				100*t.AbortRate, fmtMicros(t.ReadP50Us), fmtMicros(t.CommitP50Us))
		} else {
			fmt.Fprint(tw, "-\t-\t-\t-\t-\t-\t")
		}
		entriesPerOp := "-"
		if p.Ops > 0 {
			entriesPerOp = fmt.Sprintf("%.2f", float64(p.RaftEntries)/float64(p.Ops))
		}
		fmt.Fprintf(tw, "%s\t%s\t\n", fmtMicros(p.CPUUsPerOp), entriesPerOp)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, g := range r.Goals {
		q := r.Ratios[g.Ratio]
		verdict := "met"
		if !g.Met {
			verdict = "missed"
		}
		fmt.Fprintf(w, "%-21s ops/s %.3f (goal ≥ %.2f: %s), p50 %.2f×, p99 %.2f×\n", g.Ratio, q.OpsPerSec, g.Min, verdict, q.P50, q.P99)
	}
	for _, p := range r.Results {
		if p.FirstError != "" {
			fmt.Fprintf(w, "%s: first error: %s\n", p.Phase, p.FirstError)
		}
	}
	if n, ok := r.Details["splits_during_run"].(uint64); ok && n > 0 {
		fmt.Fprintf(w, "note: %d ranges split during the run (by load or size): some transactions spanned more ranges than asked\n", n)
	}
	return nil
}
