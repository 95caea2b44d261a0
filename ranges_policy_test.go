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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bondkv/bondkv"
)

// TestAutomaticSplitBySize: a range that holds more data than Ranges.SplitSize splits by itself
// (load-based splits and merges are off, so size is the only trigger); the ranges it makes tile
// the keyspace, and every key still reads back its value.
func TestAutomaticSplitBySize(t *testing.T) {
	seed := testSeed(t)
	expert := rangeExpert
	expert.MemTableSize = 256 << 10 // flush early: the size estimate counts only sstables
	db := openT(t, t.TempDir(), &bondkv.Options{Expert: expert, Ranges: bondkv.RangeOptions{
		SplitSize: 512 << 10, SplitEntriesPerSecond: -1, MergeSize: -1,
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// 896 keys of 4 KiB random (incompressible) values: 3.5 MiB, about 7 times SplitSize.
	const keys, valueSize, writers = 896, 4 << 10, 8
	want := make([][]byte, keys)
	rng := rand.New(rand.NewPCG(seed, 0))
	for i := range want {
		want[i] = make([]byte, valueSize)
		for j := range want[i] {
			want[i][j] = byte(rng.Uint32())
		}
	}
	key := func(i int) []byte { return []byte(fmt.Sprintf("key%05d", i)) }
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < keys; i += writers {
				if err := putRetry(ctx, db, key(i), want[i]); err != nil {
					errc <- fmt.Errorf("put %s: %w", key(i), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("seed %d: %v", seed, err)
	}

	var ds []*bondkv.RangeDescriptor
	waitFor(t, 60*time.Second, "a size-based split", func() error {
		var err error
		if ds, err = db.Inspect().Ranges(ctx); err != nil {
			return err
		}
		if n := len(ds) - 1; n < 2 { // ds[0] is the meta range
			return fmt.Errorf("%d ranges", n)
		}
		return nil
	})
	t.Logf("%d user ranges after writing %d KiB with SplitSize 512 KiB; stats %+v",
		len(ds)-1, keys*valueSize>>10, db.Inspect().Stats())
	// The user ranges tile the keyspace; automatic splits are not sticky.
	var prevEnd []byte
	for i, d := range ds[1:] {
		if !bytes.Equal(d.Start, prevEnd) || i > 0 && len(d.Start) == 0 {
			t.Fatalf("range %d starts at %q, want %q (ranges %v)", d.RangeID, d.Start, prevEnd, ds)
		}
		if i > 0 && d.Sticky {
			t.Errorf("range %d, made by an automatic split, is sticky", d.RangeID)
		}
		prevEnd = d.End
	}
	if prevEnd != nil {
		t.Fatalf("the last range ends at %q, want unbounded", prevEnd)
	}
	if s := db.Inspect().Stats(); s.Splits == 0 {
		t.Errorf("no split counted: %+v", s)
	}

	for i := range want {
		if v, err := db.Get(ctx, key(i)); err != nil || !bytes.Equal(v, want[i]) {
			t.Fatalf("seed %d: get %s after the split: %d bytes, %v; want its %d-byte value", seed, key(i), len(v), err, valueSize)
		}
	}
	kvs, err := db.Scan(ctx, nil, nil, 0)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if len(kvs) != keys {
		t.Fatalf("seed %d: scan returned %d keys, want %d", seed, len(kvs), keys)
	}
	for i, kv := range kvs {
		if !bytes.Equal(kv.Key, key(i)) || !bytes.Equal(kv.Value, want[i]) {
			t.Fatalf("seed %d: scan entry %d is %s (%d bytes), want %s", seed, i, kv.Key, len(kv.Value), key(i))
		}
	}
}

// TestPlacementFollowsLocality: node 1 is in region us, nodes 2-4 join it in region eu. Once
// every range has 3 replicas, a range's policy is set to require region=eu: its replicas move
// off node 1 onto nodes 2-4, while the other ranges keep 3 replicas anywhere; node 1 keeps
// serving that range by forwarding, and writes and reads work throughout.
func TestPlacementFollowsLocality(t *testing.T) {
	ranges := bondkv.RangeOptions{MergeSize: -1, DeadNodeTimeout: 3 * time.Second}
	open := func(id uint64, region string, join []string) *bondkv.DB {
		t.Helper()
		o := &bondkv.Options{NodeID: id, ListenAddr: "127.0.0.1:0", Join: join,
			Locality: map[string]string{"region": region}, Ranges: ranges, Expert: rangeExpert}
		if os.Getenv("BONDKV_TEST_LOG") != "" {
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()})).With("node", id)
		}
		return openT(t, t.TempDir(), o)
	}
	n1 := open(1, "us", nil)
	nodes := []*bondkv.DB{n1}
	for id := uint64(2); id <= 4; id++ {
		nodes = append(nodes, open(id, "eu", []string{n1.Addr()}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := n1.Split(ctx, []byte("m")); err != nil {
		t.Fatal(err)
	}

	// Writes and reads on both sides of "m", through every node, while replicas move.
	written := map[string]string{}
	var mu sync.Mutex
	var slowest atomic.Int64 // the longest round of 2 puts and 2 gets, in nanoseconds
	stop := make(chan struct{})
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	var stopOnce sync.Once
	stopWriter := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(stopWriter) // before the nodes close, if the test fails early
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			db := nodes[i%len(nodes)]
			opStart := time.Now()
			for _, prefix := range []string{"a", "x"} {
				k, v := fmt.Sprintf("%s-during-%04d", prefix, i), fmt.Sprintf("v%d", i)
				if err := putRetry(ctx, db, []byte(k), []byte(v)); err != nil {
					errc <- fmt.Errorf("put %s through node %d: %w", k, db.NodeID(), err)
					return
				}
				if got, err := db.Get(ctx, []byte(k)); err != nil || string(got) != v {
					errc <- fmt.Errorf("get %s through node %d: %q, %v; want %q", k, db.NodeID(), got, err, v)
					return
				}
				mu.Lock()
				written[k] = v
				mu.Unlock()
			}
			if d := int64(time.Since(opStart)); d > slowest.Load() {
				slowest.Store(d)
			}
			time.Sleep(20 * time.Millisecond) // a steady trickle, not a load test
		}
	}()
	writerOK := func() {
		t.Helper()
		select {
		case err := <-errc:
			t.Fatal(err)
		default:
		}
	}

	eu := bondkv.RangePolicy{Replicas: 3, Constraints: map[string]string{"region": "eu"}}
	// placed checks that every range has 3 voters and no other replica, and, once the policy is
	// set, that the range holding "x" has it and no voter on node 1. It returns the voters of
	// the range holding "x".
	placed := func(policySet bool) (id uint64, voters []uint64, err error) {
		writerOK()
		ds, err := n1.Inspect().Ranges(ctx)
		if err != nil {
			return 0, nil, err
		}
		for _, d := range ds {
			var vs []uint64
			for _, r := range d.Replicas {
				if r.NonVoting {
					return 0, nil, fmt.Errorf("range %d has a non-voting replica: %v", d.RangeID, d.Replicas)
				}
				vs = append(vs, uint64(r.Node))
			}
			if len(vs) != 3 {
				return 0, nil, fmt.Errorf("range %d has voters %v, want 3", d.RangeID, vs)
			}
			if !bytes.Equal(d.Start, []byte("m")) {
				continue
			}
			id, voters = uint64(d.RangeID), vs
			if !policySet {
				continue
			}
			if len(d.Policy.Constraints) != 1 || d.Policy.Constraints["region"] != "eu" || d.Policy.Replicas != 3 {
				return 0, nil, fmt.Errorf("range %d has policy %+v, want %+v", d.RangeID, d.Policy, eu)
			}
			if slices.Contains(vs, 1) {
				return 0, nil, fmt.Errorf("range %d still has a voter on node 1 (us): %v", d.RangeID, vs)
			}
		}
		if id == 0 {
			return 0, nil, fmt.Errorf("no range starts at \"m\": %v", ds)
		}
		return id, voters, nil
	}
	var before []uint64
	waitFor(t, 60*time.Second, "3 replicas of every range", func() (err error) {
		_, before, err = placed(false)
		return err
	})
	if err := n1.SetRangePolicy(ctx, []byte("x"), eu); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var euRange uint64
	var after []uint64
	waitFor(t, 90*time.Second, "the eu range on nodes 2-4, the others at 3 replicas", func() (err error) {
		euRange, after, err = placed(true)
		return err
	})
	t.Logf("range %d: voters %v before the eu policy, %v %v after it", euRange, before, after, time.Since(start).Round(time.Millisecond))
	// Node 1 drops its replica of the range once it is removed from it.
	waitFor(t, 30*time.Second, "node 1 dropping its replica of the eu range", func() error {
		for _, rs := range mustReplicas(t, n1) {
			if rs.Range == euRange {
				return fmt.Errorf("node 1 still runs range %d", euRange)
			}
		}
		return nil
	})
	stopWriter()
	writerOK()

	fwd := n1.Inspect().Stats().Forwarded
	if err := putRetry(ctx, n1, []byte("x-after"), []byte("eu")); err != nil {
		t.Fatalf("put x-after through node 1: %v", err)
	}
	if v, err := n1.Get(ctx, []byte("x-after")); err != nil || string(v) != "eu" {
		t.Fatalf("get x-after through node 1: %q, %v", v, err)
	}
	if s := n1.Inspect().Stats(); s.Forwarded < fwd+2 {
		t.Errorf("node 1 forwarded %d requests for a range it holds no replica of, want ≥ 2 (%+v)", s.Forwarded-fwd, s)
	}
	written["x-after"] = "eu"
	for _, db := range nodes {
		kvs, err := db.Scan(ctx, nil, nil, 0)
		if err != nil {
			t.Fatalf("scan through node %d: %v", db.NodeID(), err)
		}
		got := map[string]string{}
		for _, kv := range kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		if fmt.Sprint(got) != fmt.Sprint(written) {
			t.Fatalf("scan through node %d: %d keys, want %d:\ngot  %v\nwant %v", db.NodeID(), len(got), len(written), got, written)
		}
	}
	t.Logf("%d keys written during and after the moves (slowest round of 2 puts and 2 gets: %v); node 1 stats %+v",
		len(written), time.Duration(slowest.Load()).Round(time.Millisecond), n1.Inspect().Stats())
	checkVotersAgree(ctx, t, nodes)
}

// putRetry puts key until the outcome is known (a put is idempotent, so an attempt whose outcome
// was unknown is harmless to repeat).
func putRetry(ctx context.Context, db *bondkv.DB, key, value []byte) error {
	for {
		err := db.Put(ctx, key, value)
		if !errors.Is(err, bondkv.ErrAmbiguous) {
			return err
		}
	}
}

// checkVotersAgree waits until, for every range, its voters have applied the same index, and
// then requires equal checksums (testcluster.CheckConsistency for nodes opened directly).
func checkVotersAgree(ctx context.Context, t *testing.T, nodes []*bondkv.DB) {
	t.Helper()
	byID := map[uint64]*bondkv.DB{}
	for _, db := range nodes {
		byID[db.NodeID()] = db
	}
	waitFor(t, 30*time.Second, "voters converging", func() error {
		ds, err := nodes[0].Inspect().Ranges(ctx)
		if err != nil {
			return err
		}
		states := map[uint64]map[uint64]bondkv.ReplicaState{}
		for id, db := range byID {
			rs, err := db.Inspect().Replicas()
			if err != nil {
				return err
			}
			states[id] = map[uint64]bondkv.ReplicaState{}
			for _, r := range rs {
				states[id][r.Range] = r
			}
		}
		for _, d := range ds {
			var first *bondkv.ReplicaState
			for _, r := range d.Replicas {
				st, ok := states[uint64(r.Node)][uint64(d.RangeID)]
				if !ok {
					return fmt.Errorf("range %d: node %d runs no replica", d.RangeID, r.Node)
				}
				if first == nil {
					first = &st
					continue
				}
				if st.AppliedIndex != first.AppliedIndex {
					return fmt.Errorf("range %d: applied %d and %d", d.RangeID, first.AppliedIndex, st.AppliedIndex)
				}
				if st.Checksum != first.Checksum {
					t.Fatalf("range %d: replicas diverge at applied index %d", d.RangeID, st.AppliedIndex)
				}
			}
		}
		return nil
	})
}
