package bondkv_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bondkv/bondkv"
	"github.com/bondkv/bondkv/internal/netsim"
	"github.com/bondkv/bondkv/internal/testcluster"
)

// TestEventualRange: on a range with Eventual consistency, reads are served by the node's own
// replica with the staleness reported (and bounded); counters, sets and last-writer-wins values
// written concurrently through every node lose nothing; optimistic locking loses no update; a
// node cut off keeps serving bounded-stale reads only while within the bound.
func TestEventualRange(t *testing.T) {
	nw := netsim.New()
	c := testcluster.New(t, testcluster.Config{Nodes: 3, Expert: clusterExpert, Network: nw})
	ctx := context.Background()
	db0 := c.Node(0)
	if err := db0.Split(ctx, []byte("ev/")); err != nil {
		t.Fatal(err)
	}
	if err := db0.SetRangePolicy(ctx, []byte("ev/"), bondkv.RangePolicy{Consistency: bondkv.Eventual}); err != nil {
		t.Fatal(err)
	}

	// Merge functions and optimistic locking, concurrently through all three nodes.
	const per = 20
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for i := 0; i < 3; i++ {
		db := c.Node(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < per; j++ {
				if err := db.MergeCounter(ctx, []byte("ev/counter"), 2); err != nil {
					errc <- err
					return
				}
				if err := db.MergeSet(ctx, []byte("ev/set"), []byte(fmt.Sprintf("n%d-%02d", i, j))); err != nil {
					errc <- err
					return
				}
				ts := time.Unix(0, int64(j*3+i+1)) // distinct timestamps; the largest is 3*per
				if err := db.MergeLWW(ctx, []byte("ev/lww"), ts, []byte(fmt.Sprintf("from %d at %d", i, j))); err != nil {
					errc <- err
					return
				}
				for { // optimistic increment
					v, ver, err := db.GetVersion(ctx, []byte("ev/occ"))
					if err != nil && !errors.Is(err, bondkv.ErrNotFound) {
						errc <- err
						return
					}
					n, _ := strconv.Atoi(string(v))
					err = db.PutIfVersion(ctx, []byte("ev/occ"), []byte(strconv.Itoa(n+1)), ver)
					if errors.Is(err, bondkv.ErrVersionMismatch) {
						continue
					}
					if err != nil {
						errc <- err
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if _, err := db0.Get(ctx, []byte("ev/counter")); err != nil { // served by node 1's replica
		t.Fatal(err)
	}
	// Get on an Eventual range may be up to MaxStaleness behind: read at staleness 0 to check.
	fresh := func(i int, key string) bondkv.StaleRead {
		t.Helper()
		r, err := c.Node(i).GetStale(ctx, []byte(key), 0)
		if err != nil {
			t.Fatalf("node %d: %s: %v", i+1, key, err)
		}
		if r.Node != c.NodeID(i) {
			t.Fatalf("node %d's read was served by node %d, not its own replica", i+1, r.Node)
		}
		return r
	}
	if n, err := bondkv.DecodeCounter(fresh(1, "ev/counter").Value); err != nil || n != 3*per*2 {
		t.Fatalf("counter %d, %v; want %d", n, err, 3*per*2)
	}
	if set, err := bondkv.DecodeSet(fresh(2, "ev/set").Value); err != nil || len(set) != 3*per {
		t.Fatalf("set of %d elements, %v; want %d", len(set), err, 3*per)
	}
	if ts, val, err := bondkv.DecodeLWW(fresh(0, "ev/lww").Value); err != nil || ts.UnixNano() != 3*per || string(val) != fmt.Sprintf("from 2 at %d", per-1) {
		t.Fatalf("lww %v %q %v", ts.UnixNano(), val, err)
	}
	if got := string(fresh(1, "ev/occ").Value); got != strconv.Itoa(3*per) {
		t.Fatalf("optimistic counter %s, want %d", got, 3*per)
	}
	// A stale value in the way of PutIfVersion is refused, nothing written.
	if err := db0.PutIfVersion(ctx, []byte("ev/occ"), []byte("x"), 1); !errors.Is(err, bondkv.ErrVersionMismatch) {
		t.Fatalf("stale version: %v", err)
	}
	// A counter merge onto a value that is not a counter is refused with a typed error.
	if err := db0.Put(ctx, []byte("ev/text"), []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := db0.MergeCounter(ctx, []byte("ev/text"), 1); !errors.Is(err, bondkv.ErrConditionFailed) {
		t.Fatalf("counter merge onto text: %v", err)
	}

	// Cut node 3 off: it keeps answering from its replica while within the bound, with the
	// staleness reported; a write elsewhere is not visible to it; with a bound of 0 it cannot
	// answer.
	cut := 2
	before := fresh(cut, "ev/occ")
	if err := c.Isolate(cut); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	for { // the cut node may have led the range: a write in flight to it has no known outcome
		err := db0.Put(ctx, []byte("ev/occ"), []byte("after the cut"))
		if err == nil {
			break
		}
		if !errors.Is(err, bondkv.ErrAmbiguous) {
			t.Fatal(err)
		}
	}
	r, err := c.Node(cut).GetStale(ctx, []byte("ev/occ"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Value) != string(before.Value) || r.Staleness < 300*time.Millisecond || r.Staleness > time.Minute {
		t.Fatalf("cut-off read: %q with staleness %v (before the cut %q)", r.Value, r.Staleness, before.Value)
	}
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = c.Node(cut).GetStale(sctx, []byte("ev/occ"), 0)
	cancel()
	if err == nil {
		t.Fatal("a cut-off replica answered a read that must be current")
	}
	if err := c.HealAll(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := c.Node(cut).GetStale(ctx, []byte("ev/occ"), 0)
		if err == nil && string(r.Value) == "after the cut" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healed node still reads %q, %v", r.Value, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("cut-off node served %q with staleness %v", r.Value, r.Staleness)
}
