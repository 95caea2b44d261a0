package raftgroup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/store"
)

// DefaultTimeout bounds a call whose context has no deadline: dragonboat needs one on every
// request, bondkv never requires the caller to set one (STYLE.md).
const DefaultTimeout = 10 * time.Second

// ErrNoReplica is returned by calls for a range this node runs no replica of (never started,
// stopped, merged away or moved elsewhere).
var ErrNoReplica = errors.New("raftgroup: no replica of the range on this node")

// attemptTimeout bounds one attempt of a proposal or read; a request dropped because the group
// is not ready (no leader yet, leader just changed) is retried until the caller's deadline.
const attemptTimeout = 3 * time.Second

// Host is one node's dragonboat NodeHost and the replicas it runs, all backed by one
// store.Engine.
type Host struct {
	cfg        Config
	nh         *dragonboat.NodeHost
	unregister func()

	mu        sync.Mutex
	closed    bool
	proposers map[base.RangeID]*proposer
	rids      map[base.RangeID]uint64 // this node's replica IDs, cached (see replicaid.go)
	closeOnce sync.Once

	events atomic.Pointer[func(Event)]

	// fresh holds, per range, when this node's replica was last known to be up to date
	// (Unix nanoseconds): the start of its last successful ReadIndex round.
	fresh sync.Map // base.RangeID → *atomic.Int64
}

func (h *Host) markFresh(id base.RangeID, at time.Time) {
	v, _ := h.fresh.LoadOrStore(id, new(atomic.Int64))
	p := v.(*atomic.Int64)
	for {
		old := p.Load()
		if old >= at.UnixNano() || p.CompareAndSwap(old, at.UnixNano()) {
			return
		}
	}
}

// LocalRead serves f from this node's replica as it is, without a consensus round: its state
// may be behind the range's (transactions validate what they read when they commit). A replica
// not initialized yet (just started) is read through Read instead, once it is.
func (h *Host) LocalRead(ctx context.Context, id base.RangeID, f ReadFunc) (any, error) {
	if err := h.checkOpen(); err != nil {
		return nil, err
	}
	out, err := h.nh.StaleRead(uint64(id), f)
	switch {
	case errors.Is(err, dragonboat.ErrShardNotFound), errors.Is(err, dragonboat.ErrShardClosed):
		return nil, ErrNoReplica
	case errors.Is(err, dragonboat.ErrShardNotInitialized), errors.Is(err, dragonboat.ErrShardNotReady):
		return h.Read(ctx, id, f)
	}
	return out, err
}

// StaleRead serves f from this node's replica of range id without a consensus round if the
// replica was known to be up to date at most maxStaleness ago; otherwise it does a ReadIndex
// round first. It returns f's result and a bound on how far behind the replica's state may be
// (0 after a round).
func (h *Host) StaleRead(ctx context.Context, id base.RangeID, maxStaleness time.Duration, f ReadFunc) (any, time.Duration, error) {
	if err := h.checkOpen(); err != nil {
		return nil, 0, err
	}
	if v, ok := h.fresh.Load(id); ok {
		behind := time.Since(time.Unix(0, v.(*atomic.Int64).Load()))
		if behind <= maxStaleness {
			out, err := h.nh.StaleRead(uint64(id), f)
			if err == nil {
				return out, behind, nil
			}
			if errors.Is(err, dragonboat.ErrShardNotFound) || errors.Is(err, dragonboat.ErrShardClosed) {
				return nil, 0, ErrNoReplica
			}
		}
	}
	out, err := h.Read(ctx, id, f)
	return out, 0, err
}

// SetEvents installs f to receive the splits and merges applied by this node's replicas from
// now on. Set it before starting replicas. f runs on a replica's apply path: it must not block
// (hand the event to a goroutine) and must not call back into the Host synchronously.
func (h *Host) SetEvents(f func(Event)) { h.events.Store(&f) }

func (h *Host) emit(e Event) {
	if f := h.events.Load(); f != nil && *f != nil {
		(*f)(e)
	}
}

// NewHost starts the node's NodeHost. It does not start any replica.
func NewHost(cfg Config) (*Host, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("raftgroup: invalid config: %w", err)
	}
	unregister := RouteDragonboatLogs(cfg.Logger)
	nh, err := dragonboat.NewNodeHost(NodeHostConfig(cfg))
	if err != nil {
		unregister()
		return nil, fmt.Errorf("raftgroup: node %d: start NodeHost at %s: %w", cfg.NodeID, cfg.RaftAddress, err)
	}
	return &Host{
		cfg:        cfg,
		nh:         nh,
		unregister: unregister,
		proposers:  make(map[base.RangeID]*proposer),
		rids:       make(map[base.RangeID]uint64),
	}, nil
}

// NodeID is the node this Host runs on.
func (h *Host) NodeID() base.NodeID { return h.cfg.NodeID }

// RaftAddress is the address peers reach this node's Raft transport at.
func (h *Host) RaftAddress() string { return h.cfg.RaftAddress }

// Close stops every replica and the NodeHost. It is idempotent and does not close the engine.
func (h *Host) Close() {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		ps := h.proposers
		h.proposers = nil
		h.mu.Unlock()
		// Closing the NodeHost first ends every request in flight, so proposers stop at once.
		h.nh.Close()
		for _, p := range ps {
			p.stop(base.ErrClosed)
		}
		h.unregister()
	})
}

// Replica describes how to start this node's replica of a range. The range's span lives in
// its state in the engine (store.RangeState): a bootstrapped range needs one (InitRange) before
// it starts; a joining replica gets it with its first snapshot.
type Replica struct {
	// Range is the range (dragonboat shard) ID.
	Range base.RangeID
	// ReplicaID is this node's replica ID in the group (see NodeOf): 0 = the one it had
	// before, or the node ID. A joining replica gets the ID the membership change gave it.
	ReplicaID uint64
	// Members are the initial voters (replica ID → Raft address) when the group is created for
	// the first time. Ignored on restart and when Join is set.
	Members map[uint64]string
	// Join starts a replica that was added to an existing group by a membership change; it
	// catches up from the leader (through a snapshot if the log was compacted).
	Join bool
	// NonVoting starts the replica as a non-voting member (it must have been added with
	// AddNonVoting).
	NonVoting bool
}

// StartReplica starts (or restarts) this node's replica of r.Range.
func (h *Host) StartReplica(r Replica) error {
	if err := h.checkOpen(); err != nil {
		return err
	}
	if r.Range == 0 {
		return fmt.Errorf("raftgroup: start range %d: %w", r.Range, base.ErrInvalidRange)
	}
	rid := r.ReplicaID
	if rid == 0 {
		rid = h.localReplicaID(r.Range)
	} else if NodeOf(rid) != h.cfg.NodeID {
		return fmt.Errorf("raftgroup: start range %d: replica id %#x is not of node %d", r.Range, rid, h.cfg.NodeID)
	}
	members := make(map[uint64]dragonboat.Target, len(r.Members))
	if !r.Join {
		for id, addr := range r.Members {
			members[id] = addr
		}
		if len(members) > 0 {
			if _, ok := members[rid]; !ok {
				return fmt.Errorf("raftgroup: start range %d: replica %#x is not among the initial members", r.Range, rid)
			}
		}
	}
	if err := h.setLocalReplicaID(r.Range, rid); err != nil {
		return err
	}
	rc := ReplicaConfig(h.cfg, r.Range)
	rc.ReplicaID = rid
	rc.IsNonVoting = r.NonVoting
	create := func(shardID, replicaID uint64) sm.IOnDiskStateMachine {
		return &stateMachine{engine: h.cfg.Engine, id: r.Range, events: h.emit}
	}
	if err := h.nh.StartOnDiskReplica(members, r.Join, create, rc); err != nil {
		if errors.Is(err, dragonboat.ErrShardAlreadyExist) {
			return nil
		}
		return fmt.Errorf("raftgroup: node %d: start range %d: %w", h.cfg.NodeID, r.Range, err)
	}
	return nil
}

// StopReplica stops this node's replica of id; its data stays in the engine.
func (h *Host) StopReplica(id base.RangeID) error {
	if err := h.checkOpen(); err != nil {
		return err
	}
	err := h.nh.StopShard(uint64(id))
	h.mu.Lock()
	p := h.proposers[id]
	delete(h.proposers, id)
	h.mu.Unlock()
	if p != nil {
		p.stop(fmt.Errorf("range %d: replica stopped: %w", id, ErrNoReplica))
	}
	if err != nil && !errors.Is(err, dragonboat.ErrShardNotFound) {
		return fmt.Errorf("raftgroup: stop range %d: %w", id, err)
	}
	return nil
}

// Bootstrapped reports whether dragonboat holds this node's replica of id (started at least
// once, and not removed): a restart then needs neither members nor Join.
func (h *Host) Bootstrapped(id base.RangeID) bool {
	return h.nh.HasNodeInfo(uint64(id), h.localReplicaID(id))
}

// LocalReplica is what this node knows of one of its running replicas without asking others.
type LocalReplica struct {
	Range     base.RangeID
	Leader    bool
	NonVoting bool
	// Voters are the voting members as this replica last applied its membership, by node,
	// and ReplicaIDs their replica IDs.
	Voters     map[base.NodeID]string
	ReplicaIDs map[base.NodeID]uint64
}

// LocalReplicas lists the replicas running on this node.
func (h *Host) LocalReplicas() []LocalReplica {
	if h.checkOpen() != nil {
		return nil
	}
	info := h.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true})
	out := make([]LocalReplica, 0, len(info.ShardInfoList))
	for _, si := range info.ShardInfoList {
		lr := LocalReplica{
			Range: base.RangeID(si.ShardID), Leader: si.LeaderID != 0 && si.LeaderID == si.ReplicaID, NonVoting: si.IsNonVoting,
			Voters: make(map[base.NodeID]string, len(si.Replicas)),
		}
		lr.ReplicaIDs = make(map[base.NodeID]uint64, len(si.Replicas))
		for rid, a := range si.Replicas {
			lr.Voters[NodeOf(rid)] = a
			lr.ReplicaIDs[NodeOf(rid)] = rid
		}
		out = append(out, lr)
	}
	return out
}

// Running reports whether this node runs a replica of id.
func (h *Host) Running(id base.RangeID) bool {
	if h.checkOpen() != nil {
		return false
	}
	_, err := h.nh.GetNodeUser(uint64(id))
	return err == nil
}

// DestroyReplica stops this node's replica of id and deletes dragonboat's data of it (log,
// snapshots, bootstrap record), so that the range can later be added back to this node. The
// node must no longer be a member of the range (RemoveReplica), or the range must have been
// merged away; the engine's copy is the caller's to clear.
func (h *Host) DestroyReplica(ctx context.Context, id base.RangeID) error {
	if err := h.StopReplica(id); err != nil {
		return err
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for {
		err := h.nh.SyncRemoveData(ctx, uint64(id), h.localReplicaID(id))
		if err == nil {
			return h.setLocalReplicaID(id, 0)
		}
		if errors.Is(err, dragonboat.ErrShardNotStopped) {
			if perr := base.Sleep(ctx, 10*time.Millisecond); perr != nil {
				return fmt.Errorf("raftgroup: destroy range %d: %w", id, err)
			}
			continue
		}
		if errors.Is(err, dragonboat.ErrClosed) {
			return base.ErrClosed
		}
		return fmt.Errorf("raftgroup: destroy range %d: %w", id, err)
	}
}

func (h *Host) checkOpen() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return base.ErrClosed
	}
	return nil
}

// Propose replicates cmds through range id's Raft group and returns the result of the entry that
// carried them once it is committed and applied. Concurrent proposals to one range share entries
// (see proposer). If the outcome cannot be known — ctx ended or the attempt timed out after the
// entry was handed to Raft — the error wraps base.ErrAmbiguous: the commands may or may not apply.
func (h *Host) Propose(ctx context.Context, id base.RangeID, cmds []store.Command) (store.Result, error) {
	// Invalid commands would make the replicas reject the whole entry, and with it the other
	// writes batched into it.
	if err := store.ValidateCommands(cmds); err != nil {
		return store.Result{}, fmt.Errorf("raftgroup: range %d: %w", id, err)
	}
	p, err := h.proposer(id)
	if err != nil {
		return store.Result{}, err
	}
	return p.propose(ctx, cmds)
}

func (h *Host) proposer(id base.RangeID) (*proposer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, base.ErrClosed
	}
	p := h.proposers[id]
	if p == nil {
		p = newProposer(h, id)
		h.proposers[id] = p
	}
	return p, nil
}

// ProposalStats counts what this node's proposer for range id has proposed since it started:
// Raft entries and the commands they carried (their ratio is the batching factor).
type ProposalStats struct {
	Entries, Commands uint64
}

// Busy reports whether this node has writes to range id queued or in flight.
func (h *Host) Busy(id base.RangeID) bool {
	h.mu.Lock()
	p := h.proposers[id]
	h.mu.Unlock()
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending) > 0 || len(p.slots) > 0
}

// ProposalStats returns range id's proposal counters on this node.
func (h *Host) ProposalStats(id base.RangeID) ProposalStats {
	h.mu.Lock()
	p := h.proposers[id]
	h.mu.Unlock()
	if p == nil {
		return ProposalStats{}
	}
	return ProposalStats{Entries: p.entries.Load(), Commands: p.commands.Load()}
}

// Read runs f on the local replica of id after a ReadIndex round with the leader, so it observes
// every write acknowledged before Read was called (linearizable).
func (h *Host) Read(ctx context.Context, id base.RangeID, f ReadFunc) (any, error) {
	if err := h.checkOpen(); err != nil {
		return nil, err
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for {
		// A ReadIndex handed to a replica that knows no leader yet (one that just started, or
		// mid-election) can wait out a whole attempt: wait for a leader first.
		if _, _, ok, err := h.nh.GetLeaderID(uint64(id)); err == nil && !ok {
			if perr := base.Sleep(ctx, 10*time.Millisecond); perr != nil {
				return nil, fmt.Errorf("raftgroup: range %d: read: no leader: %w", id, perr)
			}
			continue
		}
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		start := time.Now()
		v, err := h.nh.SyncRead(actx, uint64(id), f)
		acancel()
		if err == nil {
			h.markFresh(id, start)
			return v, nil
		}
		if retry, err := h.retryable(ctx, err); !retry {
			return nil, fmt.Errorf("raftgroup: range %d: read: %w", id, err)
		}
	}
}

// retryable reports whether err is a transient dragonboat condition (no leader yet, queue full,
// one attempt timed out) worth another attempt within ctx, pausing briefly first. Otherwise it
// returns the error to report.
func (h *Host) retryable(ctx context.Context, err error) (bool, error) {
	switch {
	case errors.Is(err, dragonboat.ErrClosed):
		return false, base.ErrClosed
	case errors.Is(err, dragonboat.ErrShardNotFound), errors.Is(err, dragonboat.ErrShardClosed):
		return false, ErrNoReplica
	case errors.Is(err, dragonboat.ErrTimeoutTooSmall), errors.Is(err, dragonboat.ErrInvalidDeadline):
		// The caller's context has (nearly) run out: say so in its terms.
		if cerr := ctx.Err(); cerr != nil {
			return false, fmt.Errorf("%w (last attempt: %v)", cerr, err)
		}
		return false, fmt.Errorf("%w (last attempt: %v)", context.DeadlineExceeded, err)
	case errors.Is(err, dragonboat.ErrShardNotReady), errors.Is(err, dragonboat.ErrSystemBusy),
		errors.Is(err, dragonboat.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
	default:
		return false, err
	}
	if perr := base.Sleep(ctx, 10*time.Millisecond); perr != nil {
		return false, fmt.Errorf("%w (last attempt: %v)", perr, err)
	}
	return true, nil
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// Leader returns the leader of range id as this node knows it.
func (h *Host) Leader(id base.RangeID) (base.NodeID, bool) {
	leader, _, ok, err := h.nh.GetLeaderID(uint64(id))
	if err != nil || !ok {
		return 0, false
	}
	return NodeOf(leader), true
}

// WaitLeader polls until range id has a known leader or ctx ends.
func (h *Host) WaitLeader(ctx context.Context, id base.RangeID) (base.NodeID, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if l, ok := h.Leader(id); ok {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("raftgroup: range %d: no leader: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}

// waitCompacted waits until range id's log on this node starts after index idx.
func (h *Host) waitCompacted(ctx context.Context, id base.RangeID, idx uint64) error {
	for {
		lr, err := h.nh.GetLogReader(uint64(id))
		if err != nil {
			return err
		}
		if first, _ := lr.GetRange(); first > idx {
			return nil
		}
		if err := base.Sleep(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
}

// Compact takes a snapshot of range id on this node and compacts its log up to it, so that a
// replica further behind must catch up from a streamed snapshot. dragonboat rejects a snapshot
// request when nothing was applied since the last snapshot (or one is being taken); Compact then
// commits an empty entry and asks again. dragonboat drops the log entries after the snapshot
// request returns, on its own worker; Compact returns once they are gone, so a replica added
// after it cannot be sent them.
func (h *Host) Compact(ctx context.Context, id base.RangeID) (uint64, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		idx, err := h.nh.SyncRequestSnapshot(actx, uint64(id), dragonboat.SnapshotOption{
			OverrideCompactionOverhead: true,
			CompactionOverhead:         0,
		})
		acancel()
		if err == nil {
			if err := h.waitCompacted(ctx, id, idx); err != nil {
				return 0, fmt.Errorf("raftgroup: range %d: compact: %w", id, err)
			}
			return idx, nil
		}
		if errors.Is(err, dragonboat.ErrRejected) {
			if _, perr := h.Propose(ctx, id, nil); perr != nil {
				return 0, fmt.Errorf("raftgroup: range %d: compact: %w", id, perr)
			}
			// A snapshot may be in progress already: give it a moment.
			if perr := base.Sleep(ctx, 10*time.Millisecond); perr != nil {
				return 0, fmt.Errorf("raftgroup: range %d: compact: %w", id, perr)
			}
			continue
		}
		if retry, err := h.retryable(ctx, err); !retry {
			return 0, fmt.Errorf("raftgroup: range %d: compact: %w", id, err)
		}
	}
}
