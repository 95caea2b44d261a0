package bondkv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bondkv/bondkv"
	"github.com/bondkv/bondkv/internal/testcluster"
)

// rangeExpert: quick elections and placement for range tests.
var rangeExpert = bondkv.ExpertOptions{
	RaftTick: 20 * time.Millisecond, ElectionTimeout: 400 * time.Millisecond,
	LivenessInterval: 200 * time.Millisecond, PlacementInterval: 200 * time.Millisecond,
	MaxConcurrentMoves: 4, MovesPerMinute: 600,
}

func startCluster(t *testing.T, nodes int, ranges bondkv.RangeOptions, expert bondkv.ExpertOptions) *testcluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testcluster.Config{Nodes: nodes, Dir: t.TempDir(), Expert: expert, Ranges: ranges}
	if os.Getenv("BONDKV_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()}))
	}
	c, err := testcluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer ccancel()
		if !t.Failed() {
			if err := c.CheckConsistency(cctx); err != nil {
				t.Error(err)
			}
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// TestSplitMergeModel runs random puts, deletes and gets from several goroutines, each on keys
// of its own, through every node of a 3-node cluster, while another goroutine splits and
// merges ranges at random keys. Every read must match a plain map, and at the end a full scan
// must equal the map: nothing lost, duplicated or resurrected.
func TestSplitMergeModel(t *testing.T) {
	seed := testSeed(t)
	c := startCluster(t, 3, bondkv.RangeOptions{MergeSize: -1, SplitEntriesPerSecond: -1}, rangeExpert)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const workers, opsPerWorker, keysPerWorker = 4, 600, 40
	var ambiguous atomic.Int64
	// retry repeats an idempotent write whose outcome was unknown until it is known: if an
	// earlier attempt applies at all, it applies before the one that succeeds.
	retry := func(op func() error) error {
		for {
			err := op()
			if !errors.Is(err, bondkv.ErrAmbiguous) {
				return err
			}
			ambiguous.Add(1)
		}
	}
	key := func(w, k int) []byte { return []byte(fmt.Sprintf("k%03d", k*workers+w)) }

	models := make([]map[string]string, workers)
	var wg sync.WaitGroup
	errc := make(chan error, workers+1)
	stop := make(chan struct{})
	for w := 0; w < workers; w++ {
		models[w] = map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			m := models[w]
			for i := 0; i < opsPerWorker; i++ {
				db := c.Node(rng.IntN(c.Size()))
				k := key(w, rng.IntN(keysPerWorker))
				switch r := rng.IntN(10); {
				case r < 5:
					v := fmt.Sprintf("w%d-%d", w, i)
					if err := retry(func() error { return db.Put(ctx, k, []byte(v)) }); err != nil {
						errc <- fmt.Errorf("put %s: %w", k, err)
						return
					}
					m[string(k)] = v
				case r < 7:
					if err := retry(func() error { return db.Delete(ctx, k) }); err != nil {
						errc <- fmt.Errorf("delete %s: %w", k, err)
						return
					}
					delete(m, string(k))
				default:
					got, err := db.Get(ctx, k)
					want, ok := m[string(k)]
					if !ok && !errors.Is(err, bondkv.ErrNotFound) || ok && (err != nil || string(got) != want) {
						errc <- fmt.Errorf("get %s after op %d: got %q, %v; want %q (present %v)", k, i, got, err, want, ok)
						return
					}
				}
			}
		}()
	}
	var splits, merges int
	adminDone := make(chan struct{})
	go func() {
		defer close(adminDone)
		rng := rand.New(rand.NewPCG(seed, 99))
		db := c.Node(0)
		var bounds [][]byte
		for {
			select {
			case <-stop:
				return
			default:
			}
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
			if len(bounds) == 0 || rng.IntN(3) != 0 {
				k := key(rng.IntN(workers), rng.IntN(keysPerWorker))
				if err := db.Split(ctx, k); err != nil {
					errc <- fmt.Errorf("split at %s: %w", k, err)
					return
				}
				splits++
				if !slices.ContainsFunc(bounds, func(b []byte) bool { return bytes.Equal(b, k) }) {
					bounds = append(bounds, k)
				}
			} else {
				i := rng.IntN(len(bounds))
				k := bounds[i]
				bounds = append(bounds[:i], bounds[i+1:]...)
				if err := db.Inspect().Merge(ctx, k); err != nil {
					errc <- fmt.Errorf("merge at %s: %w", k, err)
					return
				}
				merges++
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-adminDone
	close(errc)
	for err := range errc {
		t.Fatalf("seed %d: %v", seed, err)
	}
	t.Logf("seed %d: %d splits, %d merges, %d writes retried after an unknown outcome", seed, splits, merges, ambiguous.Load())
	if splits == 0 || merges == 0 {
		t.Fatalf("seed %d: the run did no splits (%d) or no merges (%d)", seed, splits, merges)
	}
	want := map[string]string{}
	for _, m := range models {
		for k, v := range m {
			want[k] = v
		}
	}
	for i := 0; i < c.Size(); i++ {
		kvs, err := c.Node(i).Scan(ctx, nil, nil, 0)
		if err != nil {
			t.Fatalf("seed %d: scan on node %d: %v", seed, i+1, err)
		}
		got := map[string]string{}
		for j, kv := range kvs {
			if j > 0 && bytes.Compare(kvs[j-1].Key, kv.Key) >= 0 {
				t.Fatalf("seed %d: scan out of order or duplicated at %q", seed, kv.Key)
			}
			got[string(kv.Key)] = string(kv.Value)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("seed %d: node %d scan differs from the model:\ngot  %v\nwant %v", seed, i+1, got, want)
		}
	}
}

// TestSplitIsIdempotentAndRoutes splits at fixed keys twice, checks the descriptors, and checks
// that every key is still readable and writable through every node.
func TestSplitIsIdempotentAndRoutes(t *testing.T) {
	c := startCluster(t, 3, bondkv.RangeOptions{MergeSize: -1}, rangeExpert)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := c.Node(1)
	for i := 0; i < 50; i++ {
		if err := db.Put(ctx, []byte(fmt.Sprintf("key%02d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 2; round++ {
		for _, k := range []string{"key10", "key20", "key30"} {
			if err := db.Split(ctx, []byte(k)); err != nil {
				t.Fatalf("round %d: split at %s: %v", round, k, err)
			}
		}
	}
	ds, err := db.Inspect().Ranges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var starts []string
	for _, d := range ds[1:] { // ds[0] is the meta range
		starts = append(starts, string(d.Start))
		if len(d.Start) > 0 && !d.Sticky {
			t.Errorf("range %d made by Split is not sticky", d.RangeID)
		}
	}
	sort.Strings(starts)
	if fmt.Sprint(starts) != "[ key10 key20 key30]" {
		t.Fatalf("range starts %q, want [\"\" key10 key20 key30]", starts)
	}
	for i := 0; i < c.Size(); i++ {
		kvs, err := c.Node(i).Scan(ctx, []byte("key05"), []byte("key35"), 0)
		if err != nil || len(kvs) != 30 {
			t.Fatalf("node %d: scan across 4 ranges: %d keys, %v", i+1, len(kvs), err)
		}
		if err := c.Node(i).Put(ctx, []byte("key25"), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Split(ctx, nil); !errors.Is(err, bondkv.ErrEmptyKey) {
		t.Fatalf("split at an empty key: %v, want ErrEmptyKey", err)
	}
}

// logLevel is the level of test logs (BONDKV_TEST_LOG=debug for everything).
func logLevel() slog.Level {
	if os.Getenv("BONDKV_TEST_LOG") == "debug" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// TestAutomaticSplitAndMerge: a range under write load splits by itself; once the load is gone,
// the small idle ranges it made merge back, and no data is lost either way.
func TestAutomaticSplitAndMerge(t *testing.T) {
	expert := rangeExpert
	expert.PlacementInterval = 100 * time.Millisecond
	db := openT(t, t.TempDir(), &bondkv.Options{Expert: expert,
		Ranges: bondkv.RangeOptions{SplitEntriesPerSecond: 20}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ranges := func() int {
		ds, err := db.Inspect().Ranges(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(ds) - 1 // the meta range holds no user keys
	}
	want := map[string]string{}
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k, v := fmt.Sprintf("k%03d", (i*4+w)%200), fmt.Sprintf("v%d-%d", w, i)
				if err := db.Put(ctx, []byte(k), []byte(v)); err != nil {
					t.Errorf("put %s: %v", k, err)
					return
				}
				mu.Lock()
				want[k] = v
				mu.Unlock()
			}
		}()
	}
	waitFor(t, 60*time.Second, "a load-based split", func() error {
		if n := ranges(); n < 2 {
			return fmt.Errorf("%d ranges", n)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	split := ranges()
	waitFor(t, 60*time.Second, "idle ranges merging back", func() error {
		if n := ranges(); n != 1 {
			return fmt.Errorf("%d ranges", n)
		}
		return nil
	})
	t.Logf("split into %d ranges under load, merged back to 1 when idle; stats %+v", split, db.Inspect().Stats())
	kvs, err := db.Scan(ctx, nil, nil, 0)
	if err != nil || len(kvs) != len(want) {
		t.Fatalf("scan: %d keys, %v; want %d", len(kvs), err, len(want))
	}
	for _, kv := range kvs {
		if want[string(kv.Key)] != string(kv.Value) {
			t.Fatalf("%s = %q, want %q", kv.Key, kv.Value, want[string(kv.Key)])
		}
	}
}
