package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/client"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/raftgroup"
)

// raftEngine is raw dragonboat: one Raft group replicated on Nodes NodeHosts in this process,
// configured exactly as bondkv configures a node (raftgroup.NodeHostConfig, ReplicaConfig), over
// a trivial in-memory state machine. It measures what consensus alone costs, without bondkv's
// storage, routing and transactions. Puts go round-robin to the NodeHosts; followers forward
// them to the leader.
type raftEngine struct {
	hosts    []*dragonboat.NodeHost
	sessions []*client.Session
	sms      []*countingSM
	next     atomic.Uint64
	retries  atomic.Int64 // proposals retried after ErrShardNotReady or ErrSystemBusy
	unroute  func()
	term0    uint64         // leader's term when the benchmark started
	settings map[string]any // the Raft settings in force, for Details
}

// raftShardID is the benchmark group's ShardID: the first user range, as in bondkv.
const raftShardID = uint64(base.FirstUserRangeID)

// raftAttemptTimeout bounds one proposal attempt; a busy or leaderless group is retried.
const raftAttemptTimeout = 2 * time.Second

// raftReadyTimeout bounds the wait for the group's first leader.
const raftReadyTimeout = 30 * time.Second

func (e *raftEngine) Open(ctx context.Context, cfg EngineConfig) error {
	e.unroute = raftgroup.RouteDragonboatLogs(cfg.Logger)
	addrs, err := freeLoopbackAddrs(cfg.Nodes)
	if err != nil {
		return err
	}
	members := make(map[uint64]dragonboat.Target, cfg.Nodes)
	for i, a := range addrs {
		members[uint64(i+1)] = a
	}
	e.sms = make([]*countingSM, cfg.Nodes)
	for i := range cfg.Nodes {
		rc := raftgroup.Config{
			NodeID:      base.NodeID(i + 1),
			Dir:         filepath.Join(cfg.Dir, fmt.Sprintf("n%d", i+1)),
			RaftAddress: addrs[i],
			Logger:      cfg.Logger,
		}
		nhc, repc := raftgroup.NodeHostConfig(rc), raftgroup.ReplicaConfig(rc, base.RangeID(raftShardID))
		if i == 0 {
			e.settings = map[string]any{
				"rtt_ms":        nhc.RTTMillisecond,
				"election_rtt":  repc.ElectionRTT,
				"heartbeat_rtt": repc.HeartbeatRTT,
				"logdb_shards":  nhc.Expert.LogDB.Shards,
			}
		}
		nh, err := dragonboat.NewNodeHost(nhc)
		if err != nil {
			return fmt.Errorf("node %d: new NodeHost: %w", i+1, err)
		}
		e.hosts = append(e.hosts, nh)
		e.sessions = append(e.sessions, nh.GetNoOPSession(raftShardID))
		s := &countingSM{}
		e.sms[i] = s
		create := func(uint64, uint64) sm.IStateMachine { return s }
		if err := nh.StartReplica(members, false, create, repc); err != nil {
			return fmt.Errorf("node %d: start replica: %w", i+1, err)
		}
	}
	term, err := e.waitForLeader(ctx)
	if err != nil {
		return err
	}
	e.term0 = term
	return nil
}

// waitForLeader polls until every NodeHost knows the group's leader, so that followers can
// forward proposals from the first one on, and returns the leader's term.
func (e *raftEngine) waitForLeader(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, raftReadyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var term uint64
		ready := true
		for _, nh := range e.hosts {
			_, t, ok, err := nh.GetLeaderID(raftShardID)
			if err != nil {
				return 0, fmt.Errorf("leader of shard %d: %w", raftShardID, err)
			}
			ready = ready && ok
			term = max(term, t)
		}
		if ready {
			return term, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no leader for shard %d: %w", raftShardID, ctx.Err())
		case <-tick.C:
		}
	}
}

func (e *raftEngine) Put(ctx context.Context, key, value []byte) error {
	i := int(e.next.Add(1) % uint64(len(e.hosts)))
	// The command is the key and value, so that Raft carries as many bytes as bondkv would.
	cmd := make([]byte, 0, 2+len(key)+len(value))
	cmd = binary.AppendUvarint(cmd, uint64(len(key)))
	cmd = append(append(cmd, key...), value...)
	for {
		actx, cancel := context.WithTimeout(ctx, raftAttemptTimeout)
		_, err := e.hosts[i].SyncPropose(actx, e.sessions[i], cmd)
		cancel()
		if err == nil {
			return nil
		}
		if !errors.Is(err, dragonboat.ErrShardNotReady) && !errors.Is(err, dragonboat.ErrSystemBusy) {
			return fmt.Errorf("raft-single: propose via node %d: %w", i+1, err)
		}
		e.retries.Add(1)
		t := time.NewTimer(time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("raft-single: propose via node %d: %w (last: %w)", i+1, ctx.Err(), err)
		case <-t.C:
		}
	}
}

func (e *raftEngine) Details() map[string]any {
	applied := make([]uint64, len(e.sms))
	for i, s := range e.sms {
		applied[i] = s.entries.Load()
	}
	d := map[string]any{
		"shard_id":        raftShardID,
		"entries_applied": applied, // per node, since Open (warm-up included)
		"propose_retries": e.retries.Load(),
		"term_at_start":   e.term0,
	}
	for k, v := range e.settings {
		d[k] = v
	}
	if id, term, ok, err := e.hosts[0].GetLeaderID(raftShardID); err == nil && ok {
		d["leader_node_id"] = id
		d["term_at_end"] = term // differs from term_at_start if the leader changed
	}
	return d
}

func (e *raftEngine) Close() error {
	for _, nh := range e.hosts {
		nh.Close() // panics if called twice: hosts is cleared below
	}
	e.hosts = nil
	if e.unroute != nil {
		e.unroute()
		e.unroute = nil
	}
	return nil
}

// freeLoopbackAddrs returns n distinct 127.0.0.1 addresses whose ports were free a moment ago
// (another process could take one before dragonboat binds it; NewNodeHost then fails clearly).
func freeLoopbackAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free loopback port: %w", err)
		}
		ls = append(ls, l) // held until all are picked, so that they are distinct
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// countingSM is the trivial state machine of raftEngine: it counts applied entries and keeps the
// last index.
type countingSM struct {
	entries   atomic.Uint64
	lastIndex atomic.Uint64
}

func (s *countingSM) Update(e sm.Entry) (sm.Result, error) {
	s.entries.Add(1)
	s.lastIndex.Store(e.Index)
	return sm.Result{Value: e.Index}, nil
}

func (s *countingSM) Lookup(any) (any, error) { return s.lastIndex.Load(), nil }

func (s *countingSM) SaveSnapshot(w io.Writer, _ sm.ISnapshotFileCollection, _ <-chan struct{}) error {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], s.entries.Load())
	binary.BigEndian.PutUint64(b[8:], s.lastIndex.Load())
	_, err := w.Write(b[:])
	return err
}

func (s *countingSM) RecoverFromSnapshot(r io.Reader, _ []sm.SnapshotFile, _ <-chan struct{}) error {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	s.entries.Store(binary.BigEndian.Uint64(b[:8]))
	s.lastIndex.Store(binary.BigEndian.Uint64(b[8:]))
	return nil
}

func (s *countingSM) Close() error { return nil }
