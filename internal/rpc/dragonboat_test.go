package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/logger"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

// The 3-NodeHost harness below is repeated in internal/netsim's tests (test files cannot be
// shared across packages, and neither package should export a test harness).

var quietOnce sync.Once

// quietDragonboat sets dragonboat's package loggers to ERROR. It does not install a logger
// factory: that belongs to the package that routes dragonboat's logs into slog.
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

const testShard = 1

// startNodeHosts starts three NodeHosts replicating testShard. Node i+1 uses transport(i, f)
// where f is an rpc factory listening on the node's address.
func startNodeHosts(t *testing.T, transport func(i int, f RaftTransportFactory) config.TransportFactory) []*dragonboat.NodeHost {
	t.Helper()
	quietDragonboat()
	dir := t.TempDir()
	members := map[uint64]dragonboat.Target{}
	factories := make([]RaftTransportFactory, 3)
	for i := range 3 {
		members[uint64(i+1)], factories[i] = preListen(t)
	}
	nhs := make([]*dragonboat.NodeHost, 3)
	for i := range nhs {
		logdb := config.GetTinyMemLogDBConfig()
		logdb.Shards = 1
		nh, err := dragonboat.NewNodeHost(config.NodeHostConfig{
			NodeHostDir:    filepath.Join(dir, fmt.Sprint(i+1)),
			RTTMillisecond: 10,
			RaftAddress:    members[uint64(i+1)],
			Expert:         config.ExpertConfig{LogDB: logdb, TransportFactory: transport(i, factories[i])},
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
	return nhs
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

func TestDragonboatOverTCP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NodeHosts")
	}
	nhs := startNodeHosts(t, func(_ int, f RaftTransportFactory) config.TransportFactory { return f })
	for i := range 30 {
		propose(t, nhs[i%3], fmt.Sprint("k", i), fmt.Sprint("v", i))
	}
	for _, nh := range nhs {
		for i := range 30 {
			if got, want := read(t, nh, fmt.Sprint("k", i)), fmt.Sprint("v", i); got != want {
				t.Fatalf("%s: k%d = %q, want %q", nh.RaftAddress(), i, got, want)
			}
		}
	}
}
