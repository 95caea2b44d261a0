package rafttest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/logger"
	"github.com/lni/dragonboat/v4/raftio"
)

// ShardID is the shard the harness's NodeHosts replicate.
const ShardID = 1

// ListenFunc opens the listener on a NodeHost's Raft address.
type ListenFunc func(addr string) (net.Listener, error)

// TransportFunc returns the transport factory of the NodeHost with replica ID i+1. Its
// transport must open its listener with listen, which serves the NodeHost's Raft address.
type TransportFunc func(i int, listen ListenFunc) config.TransportFactory

// Cluster is n NodeHosts in one process, each running replica i+1 of ShardID.
type Cluster struct {
	NodeHosts []*dragonboat.NodeHost // NodeHosts[i] runs replica i+1
	snapshots []*snapshotCounter
}

// SnapshotsReceived returns how many snapshots NodeHosts[i] has received.
func (c *Cluster) SnapshotsReceived(i int) int64 { return c.snapshots[i].received.Load() }

// Start starts n NodeHosts replicating ShardID with NewKVSM; NodeHosts[i] uses the transport
// factory transport(i, listen). They are closed when the test ends.
func Start(t testing.TB, n int, transport TransportFunc) *Cluster {
	t.Helper()
	QuietDragonboat()
	dir := t.TempDir()
	members := map[uint64]dragonboat.Target{}
	listens := make([]ListenFunc, n)
	for i := range n {
		members[uint64(i+1)], listens[i] = PreListen(t)
	}
	c := &Cluster{NodeHosts: make([]*dragonboat.NodeHost, n), snapshots: make([]*snapshotCounter, n)}
	for i := range n {
		logdb := config.GetTinyMemLogDBConfig()
		logdb.Shards = 1
		c.snapshots[i] = &snapshotCounter{}
		nh, err := dragonboat.NewNodeHost(config.NodeHostConfig{
			NodeHostDir:         filepath.Join(dir, fmt.Sprint(i+1)),
			RTTMillisecond:      10,
			RaftAddress:         members[uint64(i+1)],
			SystemEventListener: c.snapshots[i],
			Expert:              config.ExpertConfig{LogDB: logdb, TransportFactory: transport(i, listens[i])},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nh.Close)
		c.NodeHosts[i] = nh
		if err := nh.StartReplica(members, false, NewKVSM, config.Config{
			ReplicaID: uint64(i + 1), ShardID: ShardID,
			ElectionRTT: 100, HeartbeatRTT: 2, CheckQuorum: true, PreVote: true,
			SnapshotEntries: 20, CompactionOverhead: 5,
		}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// PreListen opens a loopback listener now and returns its address and a ListenFunc that hands
// it over, so no other process can take the port before the transport starts. The listener
// is closed when the test ends.
func PreListen(t testing.TB) (string, ListenFunc) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	addr := ln.Addr().String()
	return addr, func(a string) (net.Listener, error) {
		if a != addr {
			return nil, fmt.Errorf("listen on %s, want %s", a, addr)
		}
		return ln, nil
	}
}

// Propose commits "k=v" through nh, retrying the errors dragonboat documents as transient.
func Propose(t testing.TB, nh *dragonboat.NodeHost, k, v string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := nh.SyncPropose(ctx, nh.GetNoOPSession(ShardID), []byte(k+"="+v))
		cancel()
		if err == nil {
			return
		}
		if !transient(err) || time.Now().After(deadline) {
			t.Fatalf("propose %s=%s: %v", k, v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Read is a linearizable read of k through nh.
func Read(t testing.TB, nh *dragonboat.NodeHost, k string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		v, err := nh.SyncRead(ctx, ShardID, k)
		cancel()
		if err == nil {
			return v.(string)
		}
		if !transient(err) || time.Now().After(deadline) {
			t.Fatalf("read %s: %v", k, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func transient(err error) bool {
	return errors.Is(err, dragonboat.ErrShardNotReady) || errors.Is(err, dragonboat.ErrSystemBusy) ||
		errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, dragonboat.ErrCanceled) ||
		errors.Is(err, dragonboat.ErrAborted) || errors.Is(err, dragonboat.ErrShardNotFound) ||
		errors.Is(err, context.DeadlineExceeded)
}

var quietOnce sync.Once

// QuietDragonboat sets dragonboat's package loggers to ERROR, once per process. It does not
// install a logger factory: that belongs to the package that routes dragonboat's logs into
// slog.
func QuietDragonboat() {
	quietOnce.Do(func() {
		for _, name := range []string{"LogDB", "config", "dragonboat", "gossip", "grpc", "logdb",
			"pebblekv", "raft", "raft-mt", "raftpb", "registry", "rsm", "server", "settings", "tan",
			"tools", "transport"} {
			logger.GetLogger(name).SetLevel(logger.ERROR)
		}
	})
}

// snapshotCounter counts snapshots a NodeHost received; it ignores every other event.
type snapshotCounter struct{ received atomic.Int64 }

func (c *snapshotCounter) SnapshotReceived(raftio.SnapshotInfo)      { c.received.Add(1) }
func (*snapshotCounter) NodeHostShuttingDown()                       {}
func (*snapshotCounter) NodeUnloaded(raftio.NodeInfo)                {}
func (*snapshotCounter) NodeDeleted(raftio.NodeInfo)                 {}
func (*snapshotCounter) NodeReady(raftio.NodeInfo)                   {}
func (*snapshotCounter) MembershipChanged(raftio.NodeInfo)           {}
func (*snapshotCounter) ConnectionEstablished(raftio.ConnectionInfo) {}
func (*snapshotCounter) ConnectionFailed(raftio.ConnectionInfo)      {}
func (*snapshotCounter) SendSnapshotStarted(raftio.SnapshotInfo)     {}
func (*snapshotCounter) SendSnapshotCompleted(raftio.SnapshotInfo)   {}
func (*snapshotCounter) SendSnapshotAborted(raftio.SnapshotInfo)     {}
func (*snapshotCounter) SnapshotRecovered(raftio.SnapshotInfo)       {}
func (*snapshotCounter) SnapshotCreated(raftio.SnapshotInfo)         {}
func (*snapshotCounter) SnapshotCompacted(raftio.SnapshotInfo)       {}
func (*snapshotCounter) LogCompacted(raftio.EntryInfo)               {}
func (*snapshotCounter) LogDBCompacted(raftio.EntryInfo)             {}
