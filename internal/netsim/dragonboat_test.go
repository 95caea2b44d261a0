package netsim_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"

	"github.com/bondkv/bondkv/internal/netsim"
	"github.com/bondkv/bondkv/internal/rafttest"
	"github.com/bondkv/bondkv/internal/rpc"
)

// leader returns the replica ID of the harness shard's leader as nh sees it, or 0.
func leader(nh *dragonboat.NodeHost) uint64 {
	id, _, ok, err := nh.GetLeaderID(rafttest.ShardID)
	if err != nil || !ok {
		return 0
	}
	return id
}

func TestDragonboatIsolateLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NodeHosts")
	}
	n := netsim.New()
	n.SetDefaultLink(netsim.Link{Latency: 2 * time.Millisecond, Bandwidth: 64 << 20})
	c := rafttest.Start(t, 3, func(i int, listen rafttest.ListenFunc) config.TransportFactory {
		return n.TransportFactory(nodeID(uint64(i+1)), rpc.RaftTransportFactory{Listen: listen})
	})
	nhs := c.NodeHosts
	for i := range 10 {
		rafttest.Propose(t, nhs[i%3], fmt.Sprint("k", i), fmt.Sprint("v", i))
	}
	old := leader(nhs[0])
	if old == 0 {
		t.Fatal("no leader after committing")
	}
	n.Isolate(nodeID(old))
	start := time.Now()
	var rest []*dragonboat.NodeHost
	for i, nh := range nhs {
		if uint64(i+1) != old {
			rest = append(rest, nh)
		}
	}

	// The other two elect a new leader and keep committing, enough for the leader to
	// snapshot and compact past what the isolated node has.
	rafttest.Propose(t, rest[0], "k10", "v10")
	var newLeader uint64
	waitFor(t, "a new leader", func() bool {
		newLeader = leader(rest[0])
		return newLeader != 0 && newLeader != old && leader(rest[1]) == newLeader
	})
	t.Logf("leader %d isolated; %d leads after %v", old, newLeader, time.Since(start))
	for i := 11; i < 60; i++ {
		rafttest.Propose(t, rest[i%2], fmt.Sprint("k", i), fmt.Sprint("v", i))
	}
	if s := n.Stats(nodeID(newLeader), nodeID(old)); s.Dropped == 0 {
		t.Fatalf("nothing dropped towards the isolated node: %+v", s)
	}

	n.HealAll()
	for _, nh := range nhs {
		for i := range 60 {
			if got, want := rafttest.Read(t, nh, fmt.Sprint("k", i)), fmt.Sprint("v", i); got != want {
				t.Fatalf("%s: k%d = %q, want %q", nh.RaftAddress(), i, got, want)
			}
		}
	}
	t.Logf("isolated node caught up %v after it was isolated; it received %d snapshot(s)",
		time.Since(start), c.SnapshotsReceived(int(old-1)))
}
