package bondkv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bondkv/bondkv"
	"github.com/bondkv/bondkv/internal/testcluster"
)

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, err)
}

// rangesOK checks that every range has want voters, all on live nodes, no non-voting replica,
// and returns the replicas and leaders per node.
func rangesOK(ctx context.Context, c *testcluster.Cluster, want int) (map[uint64]int, error) {
	live := c.Live()
	ds, err := c.Node(live[0]).Inspect().Ranges(ctx)
	if err != nil {
		return nil, err
	}
	isLive := map[uint64]bool{}
	for _, i := range live {
		isLive[c.NodeID(i)] = true
	}
	perNode := map[uint64]int{}
	for _, d := range ds {
		if len(d.Replicas) != want {
			return nil, fmt.Errorf("range %d has replicas %v, want %d voters", d.RangeID, d.Replicas, want)
		}
		for _, r := range d.Replicas {
			if r.NonVoting || !isLive[uint64(r.Node)] {
				return nil, fmt.Errorf("range %d: replica %+v is not a live voter", d.RangeID, r)
			}
			perNode[uint64(r.Node)]++
		}
	}
	return perNode, nil
}

// TestPlacementReplacesDeadNodeAndSpreads: 4 nodes, ranges of 3 replicas. Killing a node that
// holds replicas brings every range back to 3 live replicas after the dead-node timeout, and
// the ranges keep serving; a 5th node then receives replicas and leaderships.
func TestPlacementReplacesDeadNodeAndSpreads(t *testing.T) {
	c := startCluster(t, 3, bondkv.RangeOptions{MergeSize: -1, DeadNodeTimeout: 3 * time.Second}, rangeExpert)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := c.AddNode(); err != nil {
		t.Fatal(err)
	}
	db := c.Node(0)
	for i := 1; i < 8; i++ {
		if err := db.Split(ctx, []byte(fmt.Sprintf("r%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	writeAll := func(tag string) {
		t.Helper()
		for _, i := range c.Live() {
			for r := 0; r < 8; r++ {
				k := []byte(fmt.Sprintf("r%d-%s-n%d", r, tag, i))
				if err := c.Node(i).Put(ctx, k, []byte(tag)); err != nil {
					t.Fatalf("put %s on node %d: %v", k, i+1, err)
				}
				if v, err := c.Node(i).Get(ctx, k); err != nil || string(v) != tag {
					t.Fatalf("get %s on node %d: %q, %v", k, i+1, v, err)
				}
			}
		}
	}
	writeAll("before")
	// The 4th node gets its share: replicas spread so that no two nodes differ by 2 or more.
	waitFor(t, 90*time.Second, "replicas spread over 4 nodes", func() error {
		per, err := rangesOK(ctx, c, 3)
		if err != nil {
			return err
		}
		if per[4] == 0 {
			return fmt.Errorf("node 4 holds no replica: %v", per)
		}
		return nil
	})
	// Kill a node holding replicas (not node 1, which the test drives).
	victim := 1
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 90*time.Second, "every range back at 3 live replicas", func() error {
		_, err := rangesOK(ctx, c, 3)
		return err
	})
	t.Logf("ranges re-replicated %v after the kill", time.Since(start).Round(time.Millisecond))
	writeAll("after-kill")
	for _, i := range c.Live() {
		for r := 0; r < 8; r++ {
			k := []byte(fmt.Sprintf("r%d-before-n%d", r, 0))
			if v, err := c.Node(i).Get(ctx, k); err != nil || string(v) != "before" {
				t.Fatalf("get %s on node %d after the kill: %q, %v", k, i+1, v, err)
			}
		}
	}
	// A 5th node: replicas and leaders spread to it.
	n5, err := c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "replicas and a leadership on the 5th node", func() error {
		per, err := rangesOK(ctx, c, 3)
		if err != nil {
			return err
		}
		if per[c.NodeID(n5)] < 2 {
			return fmt.Errorf("node 5 holds %d replicas: %v", per[c.NodeID(n5)], per)
		}
		leads := 0
		for _, rs := range mustReplicas(t, c.Node(n5)) {
			if l, ok := c.Node(n5).Inspect().RangeLeader(rs.Range); ok && l == c.NodeID(n5) {
				leads++
			}
		}
		if leads == 0 {
			return fmt.Errorf("node 5 leads no range (replicas %v)", per)
		}
		return nil
	})
	writeAll("after-add")
	// The moves were made by whichever nodes led the meta range meanwhile (its leadership may
	// have moved since): count them all.
	moves := uint64(0)
	for _, i := range c.Live() {
		moves += c.Node(i).Inspect().Stats().MovesDone
	}
	if moves == 0 {
		t.Errorf("no node reports a replica move")
	}
}

func mustReplicas(t *testing.T, db *bondkv.DB) []bondkv.ReplicaState {
	t.Helper()
	rs, err := db.Inspect().Replicas()
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestForwarding: a node holding no replica of a range reads and writes it through the nodes
// that do.
func TestForwarding(t *testing.T) {
	frozen := rangeExpert
	frozen.PlacementInterval = time.Hour // no moves: the joined node stays empty
	c := startCluster(t, 3, bondkv.RangeOptions{MergeSize: -1}, frozen)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	i, err := c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	db := c.Node(i)
	if rs := mustReplicas(t, db); len(rs) != 0 {
		t.Fatalf("the new node holds replicas already: %+v", rs)
	}
	if err := db.Split(ctx, []byte("m")); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "z"} {
		if err := db.Put(ctx, []byte(k), []byte("v-"+k)); err != nil {
			t.Fatalf("put %s through the empty node: %v", k, err)
		}
		if v, err := c.Node(0).Get(ctx, []byte(k)); err != nil || string(v) != "v-"+k {
			t.Fatalf("get %s on node 1: %q, %v", k, v, err)
		}
		if v, err := db.Get(ctx, []byte(k)); err != nil || string(v) != "v-"+k {
			t.Fatalf("get %s through the empty node: %q, %v", k, v, err)
		}
	}
	kvs, err := db.Scan(ctx, nil, nil, 0)
	if err != nil || len(kvs) != 2 {
		t.Fatalf("scan through the empty node: %v, %v", kvs, err)
	}
	if err := db.Delete(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(1).Get(ctx, []byte("a")); err == nil {
		t.Fatal("delete through the empty node did not apply")
	}
	if rs := mustReplicas(t, db); len(rs) != 0 {
		t.Fatalf("the new node holds replicas: %+v", rs)
	}
	if s := db.Inspect().Stats(); s.Forwarded == 0 {
		t.Fatalf("no forwarded request counted: %+v", s)
	}
}
