package raftgroup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/bondkv/bondkv/internal/base"
)

// Membership is a range's Raft membership, by node (each node holds at most one replica of a
// range).
type Membership struct {
	// ConfigChangeID is the index of the last applied membership change.
	ConfigChangeID uint64
	Voters         map[base.NodeID]string
	NonVoting      map[base.NodeID]string
	// ReplicaIDs are the current members' replica IDs.
	ReplicaIDs map[base.NodeID]uint64
	// RemovedIDs are replica IDs removed from the group; they can never return (a node that
	// comes back gets a new incarnation, see NodeOf).
	RemovedIDs map[uint64]bool
}

// Membership reads range id's membership linearizably.
func (h *Host) Membership(ctx context.Context, id base.RangeID) (Membership, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		m, err := h.nh.SyncGetShardMembership(actx, uint64(id))
		acancel()
		if err == nil {
			out := Membership{
				ConfigChangeID: m.ConfigChangeID,
				Voters:         make(map[base.NodeID]string, len(m.Nodes)),
				NonVoting:      make(map[base.NodeID]string, len(m.NonVotings)),
				ReplicaIDs:     make(map[base.NodeID]uint64, len(m.Nodes)+len(m.NonVotings)),
				RemovedIDs:     make(map[uint64]bool, len(m.Removed)),
			}
			for rid, a := range m.Nodes {
				out.Voters[NodeOf(rid)] = a
				out.ReplicaIDs[NodeOf(rid)] = rid
			}
			for rid, a := range m.NonVotings {
				out.NonVoting[NodeOf(rid)] = a
				out.ReplicaIDs[NodeOf(rid)] = rid
			}
			for rid := range m.Removed {
				out.RemovedIDs[rid] = true
			}
			return out, nil
		}
		if retry, err := h.retryable(ctx, err); !retry {
			return Membership{}, fmt.Errorf("raftgroup: range %d: membership: %w", id, err)
		}
	}
}

// changeMembership runs one membership change against the current config change ID
// (OrderedConfigChange), retrying when a concurrent change or a leader change got in the way.
// done reports, from a fresh membership, whether the change has taken effect (so a retry after
// an ambiguous attempt does not apply it twice).
func (h *Host) changeMembership(ctx context.Context, id base.RangeID, what string, node base.NodeID,
	done func(Membership) bool, change func(ctx context.Context, m Membership) error) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for {
		m, err := h.Membership(ctx, id)
		if err != nil {
			return err
		}
		if done(m) {
			return nil
		}
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		err = change(actx, m)
		acancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, dragonboat.ErrRejected) {
			// A stale config change ID: another change won; re-read and retry.
			if perr := base.Sleep(ctx, 10*time.Millisecond); perr != nil {
				return fmt.Errorf("raftgroup: range %d: %s: rejected until %w", id, what, perr)
			}
			continue
		}
		if retry, err := h.retryable(ctx, err); !retry {
			return fmt.Errorf("raftgroup: range %d: %s: %w", id, what, err)
		}
	}
}

// AddVoter adds node (reachable at addr) as a voter of range id and returns its replica ID.
// The node must then start its replica with Replica.Join and that ReplicaID. Adding a node that
// is already a voter is a no-op.
func (h *Host) AddVoter(ctx context.Context, id base.RangeID, node base.NodeID, addr string) (uint64, error) {
	var rid uint64
	err := h.changeMembership(ctx, id, fmt.Sprintf("add voter %d", node), node,
		func(m Membership) bool { _, ok := m.Voters[node]; rid = m.ReplicaIDs[node]; return ok },
		func(ctx context.Context, m Membership) error {
			rid = nextReplicaID(m, node)
			return h.nh.SyncRequestAddReplica(ctx, uint64(id), rid, addr, m.ConfigChangeID)
		})
	return rid, err
}

// AddNonVoting adds node as a non-voting replica of range id and returns its replica ID: it
// receives the log but does not count for quorum, so a new replica catches up without lowering
// availability.
func (h *Host) AddNonVoting(ctx context.Context, id base.RangeID, node base.NodeID, addr string) (uint64, error) {
	var rid uint64
	err := h.changeMembership(ctx, id, fmt.Sprintf("add non-voting %d", node), node,
		func(m Membership) bool {
			_, nv := m.NonVoting[node]
			_, v := m.Voters[node]
			rid = m.ReplicaIDs[node]
			return nv || v
		},
		func(ctx context.Context, m Membership) error {
			rid = nextReplicaID(m, node)
			return h.nh.SyncRequestAddNonVoting(ctx, uint64(id), rid, addr, m.ConfigChangeID)
		})
	return rid, err
}

// Promote turns non-voting replica node of range id into a voter.
func (h *Host) Promote(ctx context.Context, id base.RangeID, node base.NodeID) error {
	return h.changeMembership(ctx, id, fmt.Sprintf("promote %d", node), node,
		func(m Membership) bool { _, ok := m.Voters[node]; return ok },
		func(ctx context.Context, m Membership) error {
			addr, ok := m.NonVoting[node]
			if !ok {
				return fmt.Errorf("node %d is not a non-voting replica", node)
			}
			return h.nh.SyncRequestAddReplica(ctx, uint64(id), m.ReplicaIDs[node], addr, m.ConfigChangeID)
		})
}

// RemoveReplica removes node's replica (voter or non-voting) from range id. The removed node
// should then destroy its replica (DestroyReplica); a later replica there gets a new replica ID.
func (h *Host) RemoveReplica(ctx context.Context, id base.RangeID, node base.NodeID) error {
	return h.changeMembership(ctx, id, fmt.Sprintf("remove %d", node), node,
		func(m Membership) bool {
			_, v := m.Voters[node]
			_, nv := m.NonVoting[node]
			return !v && !nv
		},
		func(ctx context.Context, m Membership) error {
			return h.nh.SyncRequestDeleteReplica(ctx, uint64(id), m.ReplicaIDs[node], m.ConfigChangeID)
		})
}

// TransferLeader moves range id's leadership to node and waits until this node sees it there.
// dragonboat sometimes drops a transfer request, so it is re-issued until ctx ends.
func (h *Host) TransferLeader(ctx context.Context, id base.RangeID, node base.NodeID) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	m, err := h.Membership(ctx, id)
	if err != nil {
		return err
	}
	rid, ok := m.ReplicaIDs[node]
	if _, voter := m.Voters[node]; !ok || !voter {
		return fmt.Errorf("raftgroup: range %d: transfer leadership to %d: not a voter", id, node)
	}
	var lastIssue time.Time
	for {
		if l, ok := h.Leader(id); ok && l == node {
			return nil
		}
		if time.Since(lastIssue) > h.cfg.ElectionTimeout/2 {
			if err := h.nh.RequestLeaderTransfer(uint64(id), rid); err != nil {
				if errors.Is(err, dragonboat.ErrClosed) {
					return base.ErrClosed
				}
				// Typically "not leader / unknown leader": the request must reach the leader;
				// it is forwarded once this node knows who that is, so keep polling.
			}
			lastIssue = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raftgroup: range %d: transfer leadership to %d: %w", id, node, ctx.Err())
		case <-poll.C:
		}
	}
}
