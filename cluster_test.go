package bondkv_test

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bondkv/bondkv"
	"github.com/bondkv/bondkv/internal/netsim"
	"github.com/bondkv/bondkv/internal/testcluster"
)

// clusterExpert keeps snapshots frequent so the snapshot catch-up path is exercised. Elections
// keep the default 1 s timeout: shorter ones churn leaders when the whole suite loads the
// machine's two cores.
var clusterExpert = bondkv.ExpertOptions{
	RaftTick: 50 * time.Millisecond, ElectionTimeout: time.Second,
	SnapshotEntries: 100, CompactionOverhead: 20,
}

// writer keeps writing unique keys through the live nodes and records what was acknowledged.
type writer struct {
	c     *testcluster.Cluster
	mu    sync.Mutex
	acked map[string]string
	n     atomic.Int64
	fails atomic.Int64
	avoid atomic.Int64 // 1 + index of a node clients should not use (cut off), or 0
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	last  atomic.Value // the last write error, for the stall message
}

func startWriters(t testing.TB, c *testcluster.Cluster, goroutines int) *writer {
	w := &writer{c: c, acked: map[string]string{}, stop: make(chan struct{})}
	t.Cleanup(w.stopOnce) // a failed test leaves no writer running
	for g := 0; g < goroutines; g++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-w.stop:
					return
				default:
				}
				live := c.Live()
				if len(live) == 0 {
					continue
				}
				idx := live[i%len(live)]
				if int64(idx+1) == w.avoid.Load() && len(live) > 1 {
					continue
				}
				db := c.Node(idx)
				if db == nil {
					continue
				}
				k, v := fmt.Sprintf("g%d-%06d", g, i), fmt.Sprintf("v%d", i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := db.Put(ctx, []byte(k), []byte(v))
				cancel()
				if err != nil {
					w.fails.Add(1) // killed node, lost leader: not acknowledged
					w.last.Store(fmt.Sprintf("node %d: %v", idx+1, err))
					continue
				}
				w.mu.Lock()
				w.acked[k] = v
				w.mu.Unlock()
				w.n.Add(1)
			}
		}()
	}
	return w
}

func (w *writer) halt() map[string]string {
	w.stopOnce()
	return w.acked
}

func (w *writer) stopOnce() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}

// waitProgress waits until at least n more writes were acknowledged.
func (w *writer) waitProgress(t *testing.T, n int64) {
	t.Helper()
	target := w.n.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for w.n.Load() < target {
		if time.Now().After(deadline) {
			if f := os.Getenv("BONDKV_STALL_DUMP"); f != "" { // every goroutine's stack, for a post-mortem
				if out, err := os.Create(f); err == nil {
					_ = pprof.Lookup("goroutine").WriteTo(out, 2)
					_ = out.Close()
				}
			}
			t.Fatalf("writes stalled at %d acknowledged (%d failed, last error %v)\n%s",
				w.n.Load(), w.fails.Load(), w.last.Load(), w.c.Describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkAll reads every acknowledged write on every live node.
func checkAll(t *testing.T, c *testcluster.Cluster, acked map[string]string) {
	t.Helper()
	ctx := context.Background()
	for _, i := range c.Live() {
		kvs, err := c.Node(i).Scan(ctx, nil, nil, 0)
		if err != nil {
			t.Fatalf("node %d scan: %v", i+1, err)
		}
		got := make(map[string]string, len(kvs))
		for _, kv := range kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		for k, v := range acked {
			if got[k] != v {
				t.Fatalf("node %d lost acknowledged write %s=%s (has %q)", i+1, k, v, got[k])
			}
		}
	}
}

// TestClusterKillLeaderRestartSnapshotCatchUp: writes continue with the leader killed; the
// restarted node catches up through a snapshot because the log was compacted meanwhile; data is
// identical on every replica (compared by checksum at equal applied index, and by reads).
func TestClusterKillLeaderRestartSnapshotCatchUp(t *testing.T) {
	c := testcluster.New(t, testcluster.Config{Nodes: 3, Expert: clusterExpert})
	w := startWriters(t, c, 8)
	w.waitProgress(t, 100)

	leader, err := c.WaitLeader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	w.waitProgress(t, 400) // the two survivors keep committing, past several snapshots
	for _, i := range c.Live() {
		if err := c.Node(i).Inspect().Compact(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	w.waitProgress(t, 50)
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	w.waitProgress(t, 100)
	acked := w.halt()
	if err := c.CheckConsistency(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs, err := c.Node(leader).Inspect().Replicas()
	if err != nil {
		t.Fatal(err)
	}
	user := slices.IndexFunc(rs, func(r bondkv.ReplicaState) bool { return r.Range == 3 })
	if user < 0 || rs[user].SnapshotsRecovered == 0 {
		t.Fatalf("restarted node's user range caught up without a snapshot: %+v", rs)
	}
	checkAll(t, c, acked)
	t.Logf("%d writes acknowledged, %d failed during the kill", len(acked), w.fails.Load())
}

func TestClusterLeaderTransfer(t *testing.T) {
	c := testcluster.New(t, testcluster.Config{Nodes: 3, Expert: clusterExpert})
	ctx := context.Background()
	for round := 0; round < 3; round++ {
		target := (round + 1) % 3
		if err := c.Node(0).Inspect().TransferLeader(ctx, c.NodeID(target)); err != nil {
			t.Fatal(err)
		}
		if l, ok := c.Node(0).Inspect().Leader(); !ok || l != c.NodeID(target) {
			t.Fatalf("leader %d after transfer to %d", l, c.NodeID(target))
		}
		k := []byte(fmt.Sprintf("round%d", round))
		if err := c.Node(round%3).Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if got, err := c.Node(i).Get(ctx, k); err != nil || string(got) != "x" {
				t.Fatalf("node %d: %q, %v", i+1, got, err)
			}
		}
	}
}

// TestClusterPartitionHeals isolates the leader behind the simulated network: the majority
// elects a new leader and keeps committing; after healing the old leader catches up.
func TestClusterPartitionHeals(t *testing.T) {
	nw := netsim.New()
	c := testcluster.New(t, testcluster.Config{Nodes: 3, Expert: clusterExpert, Network: nw})
	w := startWriters(t, c, 4)
	w.waitProgress(t, 50)
	leader, err := c.WaitLeader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w.avoid.Store(int64(leader + 1)) // clients of the cut-off node time out; the others keep going
	if err := c.Isolate(leader); err != nil {
		t.Fatal(err)
	}
	// A write through the isolated node cannot commit.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err = c.Node(leader).Put(ctx, []byte("isolated"), []byte("x"))
	cancel()
	if err == nil {
		t.Fatal("a write through an isolated node was acknowledged")
	}
	w.waitProgress(t, 200)
	if err := c.HealAll(); err != nil {
		t.Fatal(err)
	}
	w.avoid.Store(0)
	w.waitProgress(t, 50)
	acked := w.halt()
	if err := c.CheckConsistency(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkAll(t, c, acked)
}

// TestClusterNodeRestartsWithNilOptions: a cluster member's directory remembers everything it
// needs; reopening it with nil options (or with different Peers) rejoins the cluster.
func TestClusterNodeRestartsWithNilOptions(t *testing.T) {
	c := testcluster.New(t, testcluster.Config{Nodes: 3, Expert: clusterExpert})
	ctx := context.Background()
	if err := c.Node(0).Put(ctx, []byte("before"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	// Restart a follower: a write in flight to a leader that dies is ambiguous, which is not
	// what this test is about.
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	down := (leader + 1) % 3
	if err := c.Kill(down); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(leader).Put(ctx, []byte("while-down"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	db, err := bondkv.Open(c.Dir(down), nil)
	if err != nil {
		t.Fatalf("reopen a cluster member with nil options: %v", err)
	}
	if db.NodeID() != c.NodeID(down) {
		t.Fatalf("reopened as node %d, want %d", db.NodeID(), c.NodeID(down))
	}
	if got, err := db.Get(ctx, []byte("while-down")); err != nil || string(got) != "2" {
		t.Fatalf("read through the restarted node: %q, %v", got, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(down); err != nil { // with Peers again: also accepted
		t.Fatal(err)
	}
}
