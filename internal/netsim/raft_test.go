package netsim_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/internal/netsim"
	"github.com/bondkv/bondkv/internal/rafttest"
	"github.com/bondkv/bondkv/internal/rpc"
)

// peer is one node's wrapped rpc transport: what it receives lands in batches/chunks, and
// with echo set every batch it receives is sent back to where it came from.
type peer struct {
	id      base.NodeID
	addr    string
	tr      raftio.ITransport
	batches chan pb.MessageBatch
	chunks  chan pb.Chunk
	echo    atomic.Pointer[raftio.IConnection] // set: batches received are sent back over it
}

func newPeer(t *testing.T, n *netsim.Network, id base.NodeID) *peer {
	t.Helper()
	addr, listen := rafttest.PreListen(t)
	inner := rpc.RaftTransportFactory{Listen: listen}
	p := &peer{id: id, addr: addr, batches: make(chan pb.MessageBatch, 1024), chunks: make(chan pb.Chunk, 1024)}
	f := n.TransportFactory(id, inner)
	p.tr = f.Create(config.NodeHostConfig{RaftAddress: p.addr},
		func(b pb.MessageBatch) {
			if echo := p.echo.Load(); echo != nil {
				(*echo).SendMessageBatch(b) // schedules and returns: fine inside a handler
				return
			}
			p.batches <- b
		},
		func(c pb.Chunk) bool { p.chunks <- c; return true })
	if err := p.tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.tr.Close() })
	return p
}

func (p *peer) dial(t *testing.T, to *peer) raftio.IConnection {
	t.Helper()
	c, err := p.tr.GetConnection(context.Background(), to.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func batch(i int, size int) pb.MessageBatch {
	return pb.MessageBatch{DeploymentId: 1, SourceAddress: "x", Requests: []pb.Message{{
		Type: pb.Replicate, ShardID: 1, From: 1, To: 2, LogIndex: uint64(i),
		Entries: []pb.Entry{{Index: uint64(i), Cmd: make([]byte, size)}},
	}}}
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received within 10s")
		panic("unreachable")
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// roundTrips measures k round trips a → b → a of a small batch; b echoes.
func roundTrips(t *testing.T, ab raftio.IConnection, a *peer, k int) []time.Duration {
	t.Helper()
	var out []time.Duration
	for i := range k {
		start := time.Now()
		if err := ab.SendMessageBatch(batch(i, 10)); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, a.batches); got.Requests[0].LogIndex != uint64(i) {
			t.Fatalf("round trip %d returned batch %d", i, got.Requests[0].LogIndex)
		}
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out
}

func TestLatency(t *testing.T) {
	n := netsim.New()
	n.SetDefaultLink(netsim.Link{Latency: 20 * time.Millisecond})
	a, b := newPeer(t, n, 1), newPeer(t, n, 2)
	ba := b.dial(t, a)
	b.echo.Store(&ba)
	ab := a.dial(t, b)

	rtt := roundTrips(t, ab, a, 5)
	t.Logf("20 ms each way: round trips %v", rtt)
	if rtt[0] < 40*time.Millisecond || rtt[len(rtt)/2] > 150*time.Millisecond {
		t.Fatalf("round trips %v, want ≥ 40 ms and a median under 150 ms", rtt)
	}

	// Changed at run time, one direction at a time.
	n.SetLink(1, 2, netsim.Link{Latency: 5 * time.Millisecond})
	n.SetLink(2, 1, netsim.Link{Latency: 2 * time.Millisecond})
	rtt = roundTrips(t, ab, a, 5)
	t.Logf("5 ms + 2 ms: round trips %v", rtt)
	if rtt[0] < 7*time.Millisecond || rtt[len(rtt)/2] >= 40*time.Millisecond {
		t.Fatalf("round trips %v, want ≥ 7 ms and a median under 40 ms", rtt)
	}
	if s := n.Stats(1, 2); s.Delivered != 10 || s.Dropped != 0 {
		t.Fatalf("stats 1->2: %+v", s)
	}
}

func TestBandwidth(t *testing.T) {
	n := netsim.New()
	n.SetLink(1, 2, netsim.Link{Bandwidth: 4 << 20})
	a, b := newPeer(t, n, 1), newPeer(t, n, 2)
	ab := a.dial(t, b)
	start := time.Now()
	if err := ab.SendMessageBatch(batch(1, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if sent := time.Since(start); sent > 50*time.Millisecond {
		t.Fatalf("SendMessageBatch blocked for %v: it should only schedule", sent)
	}
	recv(t, b.batches)
	took := time.Since(start)
	t.Logf("1 MiB over 4 MiB/s: %v", took)
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Fatalf("1 MiB over 4 MiB/s took %v, want ≥ 250 ms", took)
	}
	// Two more back to back are serialised: the second arrives ≥ 500 ms after they were sent.
	start = time.Now()
	ab.SendMessageBatch(batch(2, 1<<20))
	ab.SendMessageBatch(batch(3, 1<<20))
	recv(t, b.batches)
	if got := recv(t, b.batches); got.Requests[0].LogIndex != 3 {
		t.Fatalf("out of order: %d", got.Requests[0].LogIndex)
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Fatalf("2 MiB over 4 MiB/s took %v, want ≥ 500 ms", took)
	}
	if s := n.Stats(1, 2); s.Delivered != 3 || s.DeliveredBytes < 3<<20 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestPartition(t *testing.T) {
	n := netsim.New()
	a, b := newPeer(t, n, 1), newPeer(t, n, 2)
	ab, ba := a.dial(t, b), b.dial(t, a)

	n.Partition(1, 2) // one way: 2 → 1 still works
	for i := range 5 {
		if err := ab.SendMessageBatch(batch(i, 100)); err != nil {
			t.Fatalf("a send over a cut link must look like a lost packet, got %v", err)
		}
	}
	if err := ba.SendMessageBatch(batch(100, 100)); err != nil {
		t.Fatal(err)
	}
	recv(t, a.batches)
	if s := n.Stats(1, 2); s.Dropped != 5 || s.Delivered != 0 {
		t.Fatalf("stats 1->2 while cut: %+v", s)
	}
	if len(b.batches) != 0 {
		t.Fatal("a batch crossed the cut link")
	}

	n.Heal(1, 2)
	ab.SendMessageBatch(batch(6, 100))
	if got := recv(t, b.batches); got.Requests[0].LogIndex != 6 {
		t.Fatalf("after heal got %d", got.Requests[0].LogIndex)
	}

	// Lowering the latency never lets a batch overtake one in flight.
	n.SetLink(1, 2, netsim.Link{Latency: 50 * time.Millisecond})
	ab.SendMessageBatch(batch(7, 100))
	n.SetLink(1, 2, netsim.Link{})
	ab.SendMessageBatch(batch(8, 100))
	if got := recv(t, b.batches); got.Requests[0].LogIndex != 7 {
		t.Fatalf("batch %d overtook batch 7", got.Requests[0].LogIndex)
	}
	recv(t, b.batches)

	// Snapshot chunks are a stream: a cut fails the connection.
	sc, err := a.tr.GetSnapshotConnection(context.Background(), b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.SendChunk(pb.Chunk{ChunkId: 0, ChunkCount: 2, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	n.Isolate(2)
	err = sc.SendChunk(pb.Chunk{ChunkId: 1, ChunkCount: 2})
	var pe *netsim.PartitionError
	if !errors.As(err, &pe) || !errors.Is(err, netsim.ErrPartitioned) || pe.From != 1 || pe.To != 2 {
		t.Fatalf("chunk over a cut link: %v", err)
	}
}

func TestDroppedInFlight(t *testing.T) {
	n := netsim.New()
	n.SetLink(1, 2, netsim.Link{Latency: 50 * time.Millisecond})
	a, b := newPeer(t, n, 1), newPeer(t, n, 2)
	ab := a.dial(t, b)
	ab.SendMessageBatch(batch(1, 100))
	n.Partition(1, 2)
	waitFor(t, "the in-flight batch to be dropped", func() bool { return n.Stats(1, 2).Dropped == 1 })
	if len(b.batches) != 0 {
		t.Fatal("in-flight batch delivered across a cut")
	}
}

func nodeID(i uint64) base.NodeID { return base.NodeID(i) }
