package netsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/logger"
	"github.com/lni/dragonboat/v4/raftio"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/bondkv/bondkv/internal/netsim"
	"github.com/bondkv/bondkv/internal/rpc"
)

// The 3-NodeHost harness repeats the one in internal/rpc's tests (test files cannot be shared
// across packages), plus a listener that counts received snapshots.

var quietOnce sync.Once

// quietDragonboat sets dragonboat's package loggers to ERROR without installing a logger
// factory (that belongs to the package that routes dragonboat's logs into slog).
func quietDragonboat() {
	quietOnce.Do(func() {
		for _, name := range []string{"LogDB", "config", "dragonboat", "gossip", "grpc", "logdb",
			"pebblekv", "raft", "raft-mt", "raftpb", "registry", "rsm", "server", "settings", "tan",
			"tools", "transport"} {
			logger.GetLogger(name).SetLevel(logger.ERROR)
		}
	})
}

// kvSM is a trivial in-memory state machine: a command "k=v" sets k; a lookup of k returns v.
type kvSM struct {
	mu sync.Mutex
	kv map[string]string
}

func newKVSM(uint64, uint64) sm.IStateMachine { return &kvSM{kv: map[string]string{}} }

func (s *kvSM) Update(e sm.Entry) (sm.Result, error) {
	k, v, ok := strings.Cut(string(e.Cmd), "=")
	if !ok {
		return sm.Result{}, fmt.Errorf("bad command %q", e.Cmd)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kv[k] = v
	return sm.Result{Value: uint64(len(s.kv))}, nil
}

func (s *kvSM) Lookup(q any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kv[q.(string)], nil
}

func (s *kvSM) SaveSnapshot(w io.Writer, _ sm.ISnapshotFileCollection, _ <-chan struct{}) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return json.NewEncoder(w).Encode(s.kv)
}

func (s *kvSM) RecoverFromSnapshot(r io.Reader, _ []sm.SnapshotFile, _ <-chan struct{}) error {
	kv := map[string]string{}
	if err := json.NewDecoder(r).Decode(&kv); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kv = kv
	return nil
}

func (s *kvSM) Close() error { return nil }

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

const testShard = 1

// startNodeHosts starts three NodeHosts replicating testShard. Node i+1 uses transport(i, f)
// where f is an rpc factory listening on the node's address.
func startNodeHosts(t *testing.T, transport func(i int, f rpc.RaftTransportFactory) config.TransportFactory) ([]*dragonboat.NodeHost, []*snapshotCounter) {
	t.Helper()
	quietDragonboat()
	dir := t.TempDir()
	members := map[uint64]dragonboat.Target{}
	factories := make([]rpc.RaftTransportFactory, 3)
	for i := range 3 {
		members[uint64(i+1)], factories[i] = preListen(t)
	}
	nhs := make([]*dragonboat.NodeHost, 3)
	counters := make([]*snapshotCounter, 3)
	for i := range nhs {
		logdb := config.GetTinyMemLogDBConfig()
		logdb.Shards = 1
		counters[i] = &snapshotCounter{}
		nh, err := dragonboat.NewNodeHost(config.NodeHostConfig{
			NodeHostDir:         filepath.Join(dir, fmt.Sprint(i+1)),
			RTTMillisecond:      10,
			RaftAddress:         members[uint64(i+1)],
			SystemEventListener: counters[i],
			Expert:              config.ExpertConfig{LogDB: logdb, TransportFactory: transport(i, factories[i])},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nh.Close)
		nhs[i] = nh
		if err := nh.StartReplica(members, false, newKVSM, config.Config{
			ReplicaID: uint64(i + 1), ShardID: testShard,
			ElectionRTT: 100, HeartbeatRTT: 2, CheckQuorum: true, PreVote: true,
			SnapshotEntries: 20, CompactionOverhead: 5,
		}); err != nil {
			t.Fatal(err)
		}
	}
	return nhs, counters
}

// propose commits "k=v" through nh, retrying the errors dragonboat documents as transient.
func propose(t *testing.T, nh *dragonboat.NodeHost, k, v string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := nh.SyncPropose(ctx, nh.GetNoOPSession(testShard), []byte(k+"="+v))
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

// read is a linearizable read of k through nh.
func read(t *testing.T, nh *dragonboat.NodeHost, k string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		v, err := nh.SyncRead(ctx, testShard, k)
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

// leader returns the replica ID of testShard's leader as nh sees it, or 0.
func leader(nh *dragonboat.NodeHost) uint64 {
	id, _, ok, err := nh.GetLeaderID(testShard)
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
	nhs, snaps := startNodeHosts(t, func(i int, f rpc.RaftTransportFactory) config.TransportFactory {
		return n.TransportFactory(nodeID(uint64(i+1)), f)
	})
	for i := range 10 {
		propose(t, nhs[i%3], fmt.Sprint("k", i), fmt.Sprint("v", i))
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
	propose(t, rest[0], "k10", "v10")
	var newLeader uint64
	waitFor(t, "a new leader", func() bool {
		newLeader = leader(rest[0])
		return newLeader != 0 && newLeader != old && leader(rest[1]) == newLeader
	})
	t.Logf("leader %d isolated; %d leads after %v", old, newLeader, time.Since(start))
	for i := 11; i < 60; i++ {
		propose(t, rest[i%2], fmt.Sprint("k", i), fmt.Sprint("v", i))
	}
	if s := n.Stats(nodeID(newLeader), nodeID(old)); s.Dropped == 0 {
		t.Fatalf("nothing dropped towards the isolated node: %+v", s)
	}

	n.HealAll()
	for _, nh := range nhs {
		for i := range 60 {
			if got, want := read(t, nh, fmt.Sprint("k", i)), fmt.Sprint("v", i); got != want {
				t.Fatalf("%s: k%d = %q, want %q", nh.RaftAddress(), i, got, want)
			}
		}
	}
	t.Logf("isolated node caught up %v after it was isolated; it received %d snapshot(s)",
		time.Since(start), snaps[old-1].received.Load())
}
