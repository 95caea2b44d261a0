package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeEngine sleeps for latency on every put and fails every failEvery-th one.
type fakeEngine struct {
	latency   time.Duration
	failEvery int64

	mu       sync.Mutex
	dir      string
	keys     map[string]int
	puts     atomic.Int64
	opened   bool
	closed   int
	openErr  error
	detailed bool
}

func (e *fakeEngine) Open(_ context.Context, cfg EngineConfig) error {
	e.dir, e.opened = cfg.Dir, true
	e.keys = make(map[string]int)
	return e.openErr
}

func (e *fakeEngine) Put(ctx context.Context, key, value []byte) error {
	n := e.puts.Add(1)
	e.mu.Lock()
	e.keys[string(key)] = len(value)
	e.mu.Unlock()
	time.Sleep(e.latency)
	if e.failEvery > 0 && n%e.failEvery == 0 {
		return errors.New("injected failure")
	}
	return nil
}

func (e *fakeEngine) Details() map[string]any {
	e.detailed = true
	return map[string]any{"puts": e.puts.Load()}
}

func (e *fakeEngine) Close() error { e.closed++; return nil }

func testConfig() PutConfig {
	c := DefaultPutConfig()
	c.Engine = EnginePebble // a valid name; the tests pass their own engine
	c.Concurrency = 8
	c.ValueSize = 10
	c.Duration = 200 * time.Millisecond
	c.Warmup = 50 * time.Millisecond
	c.Keys = 100
	return c
}

func TestRunPutMeasuresTheWindow(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	e := &fakeEngine{latency: time.Millisecond, failEvery: 10}
	cfg := testConfig()
	var progress []Progress
	cfg.Progress = func(p Progress) { progress = append(progress, p) }
	r, err := runPut(context.Background(), cfg, e)
	if err != nil {
		t.Fatal(err)
	}
	if !e.opened || e.closed != 1 || !e.detailed {
		t.Errorf("opened %v, closed %d times, details %v: want opened, closed once, details read", e.opened, e.closed, e.detailed)
	}
	// 8 writers at ~1 ms per put for 200 ms: at most 1,600 puts measured, a 10th of them failed.
	if r.Ops < 100 || r.Ops > 1600 {
		t.Errorf("ops = %d, want 100..1600", r.Ops)
	}
	if r.Errors == 0 || r.Errors > r.Ops/4 {
		t.Errorf("errors = %d with ops = %d, want about a tenth", r.Errors, r.Ops)
	}
	if r.FirstError != "injected failure" {
		t.Errorf("first error = %q", r.FirstError)
	}
	if total := e.puts.Load(); total <= r.Ops+r.Errors {
		t.Errorf("engine saw %d puts, measured %d+%d: the warm-up's must not count", total, r.Ops, r.Errors)
	}
	if r.P50Us < 1000 || r.P50Us > r.P99Us || r.P99Us > r.MaxUs {
		t.Errorf("p50 %v, p99 %v, max %v µs: want 1 ms <= p50 <= p99 <= max", r.P50Us, r.P99Us, r.MaxUs)
	}
	if r.OpsPerSec != round2(float64(r.Ops)/0.2) || r.DurationS != 0.2 || r.Nodes != 1 || r.Details["puts"] == nil {
		t.Errorf("result = %+v", r)
	}
	for k, n := range e.keys {
		if len(k) != keyLen || !strings.HasPrefix(k, "user0000000000") || n != cfg.ValueSize {
			t.Fatalf("put %q with a value of %d bytes: want user%%012d below 100, 10 bytes", k, n)
		}
	}
	if len(progress) == 0 || !progress[len(progress)-1].Done {
		t.Errorf("progress calls = %+v: want some, the last one Done", progress)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("temporary directory left behind: %v", entries)
	}
	if !strings.HasPrefix(e.dir, tmp) {
		t.Errorf("engine dir %s is not under TMPDIR %s", e.dir, tmp)
	}
}

func TestRunPutKeepsGivenDir(t *testing.T) {
	parent := t.TempDir()
	cfg := testConfig()
	cfg.Dir = parent
	e := &fakeEngine{}
	if _, err := runPut(context.Background(), cfg, e); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(parent, cfg.Engine); e.dir != want {
		t.Errorf("engine dir = %s, want %s", e.dir, want)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runPut(context.Background(), cfg, &fakeEngine{})
	if err == nil || !strings.Contains(err.Error(), "already holds data") {
		t.Errorf("second run in the same dir: err = %v, want 'already holds data'", err)
	}
}

func TestRunPutOpenFailure(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	e := &fakeEngine{openErr: errors.New("boom")}
	_, err := runPut(context.Background(), testConfig(), e)
	if err == nil || !strings.Contains(err.Error(), "open: boom") {
		t.Errorf("err = %v, want the open error", err)
	}
	if e.closed != 1 {
		t.Errorf("closed %d times after a failed open, want 1", e.closed)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("temporary directory left behind: %v", entries)
	}
}

func TestRunPutCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := testConfig()
	cfg.Duration = time.Hour
	cfg.Progress = func(Progress) { cancel() }
	start := time.Now()
	_, err := runPut(ctx, cfg, &fakeEngine{latency: time.Millisecond})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancelled run took %v", d)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*PutConfig)
		want string
	}{
		{"engine", func(c *PutConfig) { c.Engine = "rocksdb" }, `unknown engine "rocksdb" (want one of pebble, raft-single, bondkv)`},
		{"concurrency", func(c *PutConfig) { c.Concurrency = 0 }, "concurrency must be at least 1, got 0"},
		{"value size", func(c *PutConfig) { c.ValueSize = -1 }, "value size must be between 0 and 1048576 bytes, got -1"},
		{"value size too large", func(c *PutConfig) { c.ValueSize = 2 << 20 }, "value size must be between 0 and 1048576 bytes"},
		{"nodes", func(c *PutConfig) { c.Nodes = 0 }, "nodes must be at least 1"},
		{"duration", func(c *PutConfig) { c.Duration = 0 }, "duration must be positive"},
		{"warmup", func(c *PutConfig) { c.Warmup = -time.Second }, "warm-up must not be negative"},
		{"keys", func(c *PutConfig) { c.Keys = 0 }, "keys must be between 1 and"},
	} {
		c := DefaultPutConfig()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
		if _, err := RunPut(context.Background(), c); err == nil {
			t.Errorf("%s: RunPut ran an invalid configuration", tc.name)
		}
	}
	c := DefaultPutConfig()
	c.Concurrency, c.ValueSize = 0, -5
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "concurrency") || !strings.Contains(err.Error(), "value size") {
		t.Errorf("err = %v, want both problems reported", err)
	}
	if err := DefaultPutConfig().Validate(); err != nil {
		t.Errorf("default configuration: %v", err)
	}
}

func TestAppendKey(t *testing.T) {
	for n, want := range map[int64]string{0: "user000000000000", 42: "user000000000042", maxKeys - 1: "user999999999999"} {
		if got := string(appendKey(nil, n)); got != want {
			t.Errorf("appendKey(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestComparisonRatios(t *testing.T) {
	results := []*Result{
		{Engine: "pebble", Ops: 100, OpsPerSec: 1000, P50Us: 100, P99Us: 1000},
		{Engine: "raft-single", Ops: 10, OpsPerSec: 100, P50Us: 1000, P99Us: 5000},
		{Engine: "bondkv", Error: "open: boom"},
	}
	c := NewComparison("pebble", results)
	if got, want := c.Ratios["raft-single"], (Ratios{OpsPerSec: 0.1, P50: 10, P99: 5}); got != want {
		t.Errorf("raft-single ratios = %+v, want %+v", got, want)
	}
	if got := c.Ratios["pebble"]; got != (Ratios{1, 1, 1}) {
		t.Errorf("pebble ratios = %+v, want all 1", got)
	}
	if _, ok := c.Ratios["bondkv"]; ok {
		t.Error("a failed engine has ratios")
	}
	var b strings.Builder
	if err := c.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ops/s ÷ pebble", "0.100", "10.0×", "failed: open: boom"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if c := NewComparison("pebble", results[1:]); c.Ratios != nil {
		t.Errorf("ratios without a baseline: %+v", c.Ratios)
	}
}
