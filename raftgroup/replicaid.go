package raftgroup

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
)

// Replica IDs. dragonboat never lets a replica ID rejoin a group it was removed from, but a
// node must be able to hold a range again after a replica of it moved away. So a replica's ID
// is its node ID in the low 32 bits and an incarnation in the high 32: the first replica of a
// range on a node has incarnation 0 (replica ID = node ID), and each later one the lowest
// incarnation not removed from the group before.

// NodeOf returns the node a replica ID belongs to.
func NodeOf(replicaID uint64) base.NodeID { return base.NodeID(replicaID & 0xffffffff) }

// replicaID composes a replica ID.
func replicaID(node base.NodeID, incarnation uint32) uint64 {
	return uint64(incarnation)<<32 | uint64(node)&0xffffffff
}

// replicaIDKey is the node-local key remembering this node's replica ID of a range, when it is
// not the node ID (dragonboat must be restarted with the same one).
func replicaIDKey(id base.RangeID) string { return fmt.Sprintf("rid/%d", id) }

// LocalReplicaID is this node's replica ID of range id (see NodeOf).
func (h *Host) LocalReplicaID(id base.RangeID) uint64 { return h.localReplicaID(id) }

// localReplicaID returns this node's replica ID of range id: remembered, or the node ID.
func (h *Host) localReplicaID(id base.RangeID) uint64 {
	h.mu.Lock()
	rid, ok := h.rids[id]
	h.mu.Unlock()
	if ok {
		return rid
	}
	rid = uint64(h.cfg.NodeID)
	if raw, err := h.cfg.Engine.GetNodeLocal(replicaIDKey(id)); err == nil && len(raw) == 8 {
		rid = binary.BigEndian.Uint64(raw)
	}
	h.mu.Lock()
	h.rids[id] = rid
	h.mu.Unlock()
	return rid
}

// setLocalReplicaID remembers this node's replica ID of range id (durably if it is not the
// node ID; rid 0 forgets it).
func (h *Host) setLocalReplicaID(id base.RangeID, rid uint64) error {
	var err error
	switch {
	case rid == 0 || rid == uint64(h.cfg.NodeID):
		err = h.cfg.Engine.DeleteNodeLocal(replicaIDKey(id))
	default:
		err = h.cfg.Engine.PutNodeLocal(replicaIDKey(id), binary.BigEndian.AppendUint64(nil, rid))
	}
	if err != nil && !errors.Is(err, base.ErrClosed) {
		return fmt.Errorf("raftgroup: range %d: remember replica id: %w", id, err)
	}
	h.mu.Lock()
	if rid == 0 {
		delete(h.rids, id)
	} else {
		h.rids[id] = rid
	}
	h.mu.Unlock()
	return nil
}

// nextReplicaID returns the replica ID for adding node to a group with membership m: the
// lowest incarnation never removed.
func nextReplicaID(m Membership, node base.NodeID) uint64 {
	for inc := uint32(0); ; inc++ {
		rid := replicaID(node, inc)
		if !m.RemovedIDs[rid] {
			return rid
		}
	}
}
