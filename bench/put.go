package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bondkv/bondkv/internal/base"
)

// PutConfig describes a put benchmark: Concurrency writers each doing single-key puts of random
// keys, one at a time, for Warmup (not measured) and then Duration (measured).
type PutConfig struct {
	// Engine is one of EngineNames.
	Engine string
	// Nodes is the number of replicas, all in this process (pebble always has 1).
	Nodes int
	// Concurrency is the number of writers, each with one put in flight.
	Concurrency int
	// ValueSize is the size of every value, in bytes (0 to base.MaxValueSize).
	ValueSize int
	// Duration is how long puts are measured, after the warm-up.
	Duration time.Duration
	// Warmup is how long the writers run before measuring starts (0 = none).
	Warmup time.Duration
	// Keys is the key space: keys are "user%012d" of a uniform random number in [0, Keys).
	Keys int64
	// Ranges, for bondkv, pre-splits the key space into this many ranges of equal key count
	// before the writers start (0 or 1: one range). Other engines ignore it.
	Ranges int
	// Dir, if set, holds the data under Dir/<engine> (which must not hold anything yet) and is
	// kept. If empty, the data goes to a fresh temporary directory removed afterwards.
	Dir string
	// Seed seeds every writer's key and value generator (writer i uses the stream (Seed, i)).
	Seed uint64
	// Logger receives the engines' logs. nil = discard.
	Logger *slog.Logger
	// Progress, if set, is called from one goroutine about five times a second while the
	// writers run, and once more with Done set.
	Progress func(Progress)
}

// Progress is a running benchmark's state, for a progress display.
type Progress struct {
	Engine string
	// Elapsed is the time since the writers started, at most Total.
	Elapsed time.Duration
	// Total is the warm-up plus the measured duration.
	Total time.Duration
	// Warmup tells whether the benchmark is still warming up.
	Warmup bool
	// OpsPerSec is the rate of successful puts since the previous call.
	OpsPerSec float64
	// Done is set on the last call.
	Done bool
	// Steps > 0 marks a preparation before the writers start (pre-splitting ranges): Step of
	// Steps are done. Elapsed is then the preparation's time and Total is 0.
	Step, Steps int
}

// DefaultPutConfig is the configuration kvbench put starts from.
func DefaultPutConfig() PutConfig {
	return PutConfig{
		Engine:      EngineBondKV,
		Nodes:       3,
		Concurrency: 64,
		ValueSize:   100,
		Duration:    10 * time.Second,
		Warmup:      time.Second,
		Keys:        1_000_000,
		Seed:        1,
	}
}

// maxKeys is the largest key space the fixed-width key format holds.
const maxKeys = 1_000_000_000_000

// Validate reports every problem with c at once.
// checkWorkload checks the knobs every workload shares.
func checkWorkload(nodes, concurrency, valueSize int, duration, warmup time.Duration) []error {
	var errs []error
	if nodes < 1 {
		errs = append(errs, fmt.Errorf("nodes must be at least 1, got %d", nodes))
	}
	if concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency must be at least 1, got %d", concurrency))
	}
	if valueSize < 0 || valueSize > base.MaxValueSize {
		errs = append(errs, fmt.Errorf("value size must be between 0 and %d bytes, got %d", base.MaxValueSize, valueSize))
	}
	if duration <= 0 {
		errs = append(errs, fmt.Errorf("duration must be positive, got %v", duration))
	}
	if warmup < 0 {
		errs = append(errs, fmt.Errorf("warm-up must not be negative, got %v", warmup))
	}
	return errs
}

func (c PutConfig) Validate() error {
	var errs []error
	if _, err := NewEngine(c.Engine); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, checkWorkload(c.Nodes, c.Concurrency, c.ValueSize, c.Duration, c.Warmup)...)
	if c.Ranges < 0 || c.Ranges > 100000 {
		errs = append(errs, fmt.Errorf("ranges must be between 0 and 100000, got %d", c.Ranges))
	} else if int64(c.Ranges) > c.Keys {
		errs = append(errs, fmt.Errorf("ranges (%d) must not exceed keys (%d)", c.Ranges, c.Keys))
	}
	if c.Keys < 1 || c.Keys > maxKeys {
		errs = append(errs, fmt.Errorf("keys must be between 1 and %d, got %d", int64(maxKeys), c.Keys))
	}
	return errors.Join(errs...)
}

// opGrace is how long a put still in flight when the measured window closes may take before its
// context is cancelled. Such a put is not counted either way.
const opGrace = 10 * time.Second

// RunPut runs the put benchmark of cfg.Engine. An error means no result: a bad configuration, an
// engine that failed to open or close, or ctx cancelled. Failed puts are not errors; they are
// counted in the result.
func RunPut(ctx context.Context, cfg PutConfig) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e, _ := NewEngine(cfg.Engine) // validated
	return runPut(ctx, cfg, e)
}

func runPut(ctx context.Context, cfg PutConfig, e Engine) (res *Result, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dir, cleanup, err := engineDir(cfg.Dir, cfg.Engine)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := cleanup(); cerr != nil && err == nil {
			res, err = nil, cerr
		}
	}()
	openErr := e.Open(ctx, EngineConfig{Dir: dir, Nodes: cfg.nodes(), Logger: cfg.Logger,
		Ranges: cfg.Ranges, Keys: cfg.Keys, Progress: cfg.Progress})
	defer func() {
		if cerr := e.Close(); cerr != nil && err == nil {
			res, err = nil, fmt.Errorf("%s: close: %w", cfg.Engine, cerr)
		}
	}()
	if openErr != nil {
		return nil, fmt.Errorf("%s: open: %w", cfg.Engine, openErr)
	}

	m := runWriters(ctx, e, cfg)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: interrupted: %w", cfg.Engine, err)
	}
	res = newResult(cfg)
	res.setMeasurement(cfg, m)
	res.Details = e.Details()
	return res, nil
}

// nodes is the number of replicas the engine runs: Nodes, except for pebble.
func (c PutConfig) nodes() int {
	if c.Engine == EnginePebble {
		return 1
	}
	return c.Nodes
}

// engineDir makes the engine's directory: parent/engine if parent is set (kept afterwards),
// otherwise a fresh temporary directory that cleanup removes.
func engineDir(parent, engine string) (dir string, cleanup func() error, err error) {
	if parent == "" {
		tmp, err := os.MkdirTemp("", "kvbench-"+engine+"-")
		if err != nil {
			return "", nil, fmt.Errorf("temporary directory: %w", err)
		}
		return tmp, func() error {
			if err := os.RemoveAll(tmp); err != nil {
				return fmt.Errorf("remove temporary directory: %w", err)
			}
			return nil
		}, nil
	}
	dir = filepath.Join(parent, engine)
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return "", nil, fmt.Errorf("%s already holds data: kvbench needs a fresh directory (dragonboat freezes the Raft addresses, which change every run)", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("data directory: %w", err)
	}
	return dir, func() error { return nil }, nil
}

// measurement is what the writers measured, merged.
type measurement struct {
	hist     Histogram // latency of every successful measured put
	errs     int64     // failed measured puts
	firstErr error
	cpu      time.Duration // process CPU time during the measured window
	cpuWall  time.Duration // length of that window as measured
}

// writer is one writer's state. Only its goroutine touches it, except done (read by the
// progress reporter) and the rest after the writer has stopped.
type writer struct {
	done     atomic.Int64 // successful puts, warm-up included
	hist     Histogram
	errs     int64
	firstErr error
	rng      *rand.Rand
	pool     []byte // random bytes that values are cut from
}

func runWriters(ctx context.Context, e Engine, cfg PutConfig) measurement {
	start := time.Now()
	measureStart := start.Add(cfg.Warmup)
	end := measureStart.Add(cfg.Duration)
	runCtx, cancel := context.WithDeadline(ctx, end.Add(opGrace))
	defer cancel()

	writers := make([]*writer, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range writers {
		w := &writer{rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i)))}
		w.pool = make([]byte, max(2*cfg.ValueSize, 4096))
		for j := range w.pool {
			w.pool[j] = byte(w.rng.Uint32())
		}
		writers[i] = w
		wg.Go(func() { w.run(runCtx, e, cfg, measureStart, end) })
	}

	// Process CPU time over the measured window: sampled when it opens and once the writers end.
	cpuAtStart := make(chan time.Duration, 1)
	cpuTimer := time.AfterFunc(time.Until(measureStart), func() { cpuAtStart <- processCPU() })
	defer cpuTimer.Stop()

	stopProgress := make(chan struct{})
	var progressDone sync.WaitGroup
	if cfg.Progress != nil {
		progressDone.Go(func() { reportProgress(cfg, writers, start, measureStart, end, stopProgress) })
	}
	wg.Wait()
	var m measurement
	select {
	case c0 := <-cpuAtStart:
		m.cpu = processCPU() - c0
		m.cpuWall = time.Since(measureStart)
	default: // interrupted before the window opened
	}
	close(stopProgress)
	progressDone.Wait()

	for _, w := range writers {
		m.hist.Merge(&w.hist)
		m.errs += w.errs
		if m.firstErr == nil {
			m.firstErr = w.firstErr
		}
	}
	return m
}

func (w *writer) run(ctx context.Context, e Engine, cfg PutConfig, measureStart, end time.Time) {
	for ctx.Err() == nil {
		key := appendKey(make([]byte, 0, keyLen), w.rng.Int64N(cfg.Keys))
		off := w.rng.IntN(len(w.pool) - cfg.ValueSize + 1)
		value := append([]byte(nil), w.pool[off:off+cfg.ValueSize]...)

		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		err := e.Put(ctx, key, value)
		t1 := time.Now()
		if t1.After(end) {
			return // finished after the window: not counted
		}
		if err != nil {
			if !t0.Before(measureStart) {
				w.errs++
				if w.firstErr == nil {
					w.firstErr = err
				}
			}
			w.backoff(ctx)
			continue
		}
		w.done.Add(1)
		if !t0.Before(measureStart) {
			w.hist.Record(t1.Sub(t0))
		}
	}
}

// backoff pauses a writer after a failed put so that a broken engine is not hammered in a loop.
func (w *writer) backoff(ctx context.Context) {
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

const keyLen = len("user") + 12

// appendKey appends the fixed-width key of n (0 <= n < maxKeys): "user%012d".
func appendKey(dst []byte, n int64) []byte {
	var digits [12]byte
	for i := len(digits) - 1; i >= 0; i-- {
		digits[i] = byte('0' + n%10)
		n /= 10
	}
	return append(append(dst, "user"...), digits[:]...)
}

func reportProgress(cfg PutConfig, writers []*writer, start, measureStart, end time.Time, stop <-chan struct{}) {
	total := end.Sub(start)
	sum := func() int64 {
		var n int64
		for _, w := range writers {
			n += w.done.Load()
		}
		return n
	}
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	prevT, prevN := start, int64(0)
	for {
		select {
		case <-stop:
			cfg.Progress(Progress{Engine: cfg.Engine, Elapsed: total, Total: total, Done: true})
			return
		case now := <-ticker.C:
			n := sum()
			rate := float64(n-prevN) / now.Sub(prevT).Seconds()
			prevT, prevN = now, n
			cfg.Progress(Progress{
				Engine:    cfg.Engine,
				Elapsed:   min(now.Sub(start), total),
				Total:     total,
				Warmup:    now.Before(measureStart),
				OpsPerSec: rate,
			})
		}
	}
}

// newResult is a Result with cfg's workload and no measurement.
func newResult(cfg PutConfig) *Result {
	return &Result{
		Bench:       "put",
		Engine:      cfg.Engine,
		Nodes:       cfg.nodes(),
		Concurrency: cfg.Concurrency,
		ValueSize:   cfg.ValueSize,
		Keys:        cfg.Keys,
		Seed:        cfg.Seed,
		WarmupS:     cfg.Warmup.Seconds(),
		DurationS:   cfg.Duration.Seconds(),
		CPUs:        runtime.GOMAXPROCS(0),
	}
}

func (r *Result) setMeasurement(cfg PutConfig, m measurement) {
	h := &m.hist
	r.Ops = int64(h.Count())
	r.OpsPerSec = round2(float64(r.Ops) / cfg.Duration.Seconds())
	r.MeanUs = micros(h.Mean())
	r.P50Us = micros(h.Percentile(50))
	r.P90Us = micros(h.Percentile(90))
	r.P99Us = micros(h.Percentile(99))
	r.P999Us = micros(h.Percentile(99.9))
	r.MaxUs = micros(h.Max())
	r.Errors = m.errs
	if m.cpuWall > 0 {
		r.CPUCores = round2(m.cpu.Seconds() / m.cpuWall.Seconds())
	}
	if r.Ops > 0 {
		r.CPUUsPerOp = round2(float64(m.cpu.Microseconds()) / float64(r.Ops))
	}
	if m.firstErr != nil {
		r.FirstError = m.firstErr.Error()
	}
}

// processCPU is the CPU time (user + system) this process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
