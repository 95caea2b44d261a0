package shard

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/raftgroup"
	"github.com/bondkv/bondkv/store"
)

// Split makes key the start of a range. It is idempotent: if key already starts a range it
// returns at once. The right-hand range starts on the same nodes as the range it came from,
// sharing its data (nothing is copied): the split is one Raft command of the old range.
func (n *Node) Split(ctx context.Context, key []byte) error {
	return n.split(ctx, key, true)
}

func (n *Node) split(ctx context.Context, key []byte, sticky bool) error {
	if err := base.CheckKey(key); err != nil {
		return err
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	force := false
	var newID base.RangeID
	for attempt := 0; ; attempt++ {
		d, err := n.lookup(ctx, key, force)
		if err != nil {
			return err
		}
		if bytes.Equal(d.Start, key) {
			if sticky && !d.Sticky {
				return n.markSticky(ctx, d.RangeID)
			}
			return nil
		}
		if newID == 0 {
			if newID, err = n.allocRangeID(ctx); err != nil {
				return err
			}
		}
		members, err := n.members(ctx, d.RangeID)
		if err != nil {
			// The membership could not be read (no leader at the moment, a move in progress):
			// nothing was proposed, so try again.
			err = fmt.Errorf("%w: %w", ErrNoQuorum, err)
		} else {
			_, err = n.propose(ctx, d.RangeID, []store.Command{store.SplitCommand(key, newID, members)})
		}
		if err == nil {
			n.splits.Add(1)
			return n.publishSplit(ctx, d, key, newID, members, sticky)
		}
		if !retryable(err) && !errors.Is(err, errRejected) && !errors.Is(err, base.ErrAmbiguous) {
			return fmt.Errorf("shard: split at %q: %w", key, err)
		}
		// The range moved or changed under us, or this very split applied and the answer was
		// lost (then the key starts a range once meta records it; the new range's leader
		// records it within a second if this node does not): look again. A repeated split at a
		// key that is already a boundary is refused, so it cannot apply twice.
		force = true
		if perr := base.Sleep(ctx, time.Duration(attempt+1)*20*time.Millisecond); perr != nil {
			return fmt.Errorf("shard: split at %q: %w (last: %w)", key, perr, err)
		}
	}
}

// markSticky sets the sticky bit of range id's descriptor as meta holds it now.
func (n *Node) markSticky(ctx context.Context, id base.RangeID) error {
	for {
		cur, err := n.metaGet(ctx, descKey(id))
		if err != nil || cur == nil {
			return err
		}
		d, err := decodeDescriptor(cur)
		if err != nil || d.Sticky {
			return err
		}
		d.Sticky = true
		err = n.metaCPut(ctx, descKey(id), encodeDescriptor(d), cur)
		if !errors.Is(err, ErrConditionFailed) {
			if err == nil {
				n.cache.put(d)
			}
			return err
		}
	}
}

// publishSplit records both halves of a split in the meta range.
func (n *Node) publishSplit(ctx context.Context, left *Descriptor, key []byte, right base.RangeID, members map[base.NodeID]string, sticky bool) error {
	l := left.Clone()
	l.End = bytes.Clone(key)
	l.Generation++
	l.Sticky = left.Sticky
	r := left.Clone()
	r.RangeID = right
	r.Start = bytes.Clone(key)
	r.Generation = l.Generation
	r.Sticky = sticky
	r.Replicas = nil
	for rid := range members {
		r.Replicas = append(r.Replicas, Replica{Node: raftgroup.NodeOf(uint64(rid))})
	}
	sortReplicas(r.Replicas)
	if err := n.publishDescriptor(ctx, r); err != nil {
		return err
	}
	return n.publishDescriptor(ctx, l)
}

// members returns range id's voters by replica ID (replica ID → address), read from a
// replica; a split gives the new range the same replicas.
func (n *Node) members(ctx context.Context, id base.RangeID) (map[base.NodeID]string, error) {
	info, err := n.rangeInfo(ctx, id, 0, infoOpts{membership: true})
	if err != nil {
		return nil, err
	}
	if len(info.Voters) == 0 {
		return nil, &RangeMovedError{Reason: fmt.Sprintf("range %d: no membership known", id)}
	}
	if len(info.NonVotingMembers) > 0 {
		// A replica is moving: the new range would start on the old set. Wait for the move.
		return nil, &RangeMovedError{Reason: fmt.Sprintf("range %d: a replica move is in progress", id)}
	}
	out := make(map[base.NodeID]string, len(info.Voters))
	for node, addr := range info.Voters {
		rid, ok := info.ReplicaIDs[node]
		if !ok {
			return nil, fmt.Errorf("shard: range %d: replica id of node %d unknown", id, node)
		}
		out[base.NodeID(rid)] = addr
	}
	return out, nil
}

type infoOpts struct{ sync, membership bool }

// rangeInfo asks node (0: any replica, the leader first) about its replica of id.
func (n *Node) rangeInfo(ctx context.Context, id base.RangeID, node base.NodeID, o infoOpts) (RangeInfo, error) {
	if node == n.cfg.NodeID || node == 0 && n.host.Running(id) {
		info := n.localInfo(ctx, id, o.sync, o.membership)
		return info, info.Err.err(n.cfg.NodeID)
	}
	req := mustJSON(rangeInfoReq{Range: id, Sync: o.sync, Membership: o.membership})
	handle := func(from base.NodeID, raw []byte) (RangeInfo, error) {
		var info RangeInfo
		if err := json.Unmarshal(raw, &info); err != nil {
			return info, fmt.Errorf("shard: node %d: range info: %w", from, base.ErrCorruption)
		}
		if info.Err != nil {
			return info, info.Err.err(from)
		}
		if info.Leader != 0 {
			n.cache.setLeader(id, info.Leader)
		}
		return info, nil
	}
	if node != 0 {
		addr, ok := n.addrOf(node)
		if !ok {
			return RangeInfo{}, fmt.Errorf("shard: node %d: address unknown: %w", node, errNodeUnavailable)
		}
		raw, err := n.client.Call(ctx, addr, methodRangeInfo, req)
		if err != nil {
			return RangeInfo{}, fmt.Errorf("node %d: %w: %w", node, errNodeUnavailable, err)
		}
		return handle(node, raw)
	}
	var info RangeInfo
	err := n.forward(ctx, id, methodRangeInfo, req, func(from base.NodeID, raw []byte) error {
		var err error
		info, err = handle(from, raw)
		if err == nil && !info.Running {
			return &RangeMovedError{Reason: fmt.Sprintf("node %d does not run range %d", from, id)}
		}
		return err
	}, false)
	return info, err
}

func sortReplicas(rs []Replica) {
	slices.SortFunc(rs, func(a, b Replica) int { return cmp.Compare(a.Node, b.Node) })
}

// loadTracker follows the ranges this node leads: entries applied per second and size, for
// load-based splits and for the placement driver (reported in the liveness record).
type loadTracker struct {
	mu    sync.Mutex
	last  map[base.RangeID]loadSample
	loads map[base.RangeID]RangeLoad
	hot   map[base.RangeID]int // consecutive looks above the load threshold
}

type loadSample struct {
	applied uint64
	at      time.Time
}

func newLoadTracker() *loadTracker {
	return &loadTracker{last: make(map[base.RangeID]loadSample), loads: make(map[base.RangeID]RangeLoad), hot: make(map[base.RangeID]int)}
}

func (t *loadTracker) snapshot() []RangeLoad {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]RangeLoad, 0, len(t.loads))
	for _, l := range t.loads {
		out = append(out, l)
	}
	return out
}

// observeLoads samples every range this node leads; it returns those that should split.
func (n *Node) observeLoads() (splits []base.RangeID) {
	t := n.loads
	now := time.Now()
	leading := make(map[base.RangeID]bool)
	for _, lr := range n.host.LocalReplicas() {
		if lr.Leader {
			leading[lr.Range] = true
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.loads {
		if !leading[id] {
			delete(t.loads, id)
			delete(t.last, id)
			delete(t.hot, id)
		}
	}
	for id := range leading {
		applied, err := n.engine.AppliedIndex(id)
		if err != nil {
			continue
		}
		st, ok, err := n.engine.RangeState(id)
		if err != nil || !ok {
			continue
		}
		size, _ := n.engine.ApproximateSize(st.Span)
		l := RangeLoad{Range: id, Size: size, Frozen: st.Frozen}
		if prev, ok := t.last[id]; ok && now.After(prev.at) && applied >= prev.applied {
			l.EntriesPerSec = float64(applied-prev.applied) / now.Sub(prev.at).Seconds()
		}
		t.last[id] = loadSample{applied: applied, at: now}
		t.loads[id] = l
		if id == base.MetaRangeID || st.Span.Empty() {
			continue
		}
		if n.cfg.SplitEntriesPerSecond > 0 && l.EntriesPerSec > n.cfg.SplitEntriesPerSecond {
			t.hot[id]++
		} else {
			t.hot[id] = 0
		}
		if size > n.cfg.SplitSize || t.hot[id] >= 3 {
			t.hot[id] = 0
			splits = append(splits, id)
		}
	}
	return splits
}

// autoSplit splits range id at its middle key (by bytes).
func (n *Node) autoSplit(ctx context.Context, id base.RangeID) {
	st, ok, err := n.engine.RangeState(id)
	if err != nil || !ok || st.Frozen {
		return
	}
	key, err := n.engine.SplitKey(st.Span)
	if err != nil || key == nil || bytes.Equal(key, st.Span.Start) {
		return
	}
	if err := n.split(ctx, key, false); err != nil {
		if !errors.Is(err, context.Canceled) {
			n.log.Warn("automatic split failed", "range", id, "err", err)
		}
		return
	}
	n.log.Info("range split automatically", "range", id, "at", fmt.Sprintf("%q", key))
}
