package bondkv

import (
	"context"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/raftgroup"
)

// Inspector gives operators, tools and tests a view into a node's replicas and a few
// administrative actions. It is not needed for normal use.
type Inspector struct{ db *DB }

// Inspect returns the node's Inspector.
func (db *DB) Inspect() *Inspector { return &Inspector{db: db} }

// ReplicaState is the state of one replica on this node.
type ReplicaState struct {
	Range uint64
	// AppliedIndex is the last Raft index applied to this replica.
	AppliedIndex uint64
	// Checksum is a SHA-256 over the replica's data at AppliedIndex; replicas at the same
	// applied index must have equal checksums.
	Checksum [32]byte
	// SnapshotsRecovered counts the snapshots this replica has installed from other replicas
	// since the node opened (catch-up after falling behind a compacted log).
	SnapshotsRecovered uint64
}

// Replicas returns the state of this node's replicas, read from the local engine (not a
// consensus read).
func (in *Inspector) Replicas() ([]ReplicaState, error) {
	if err := in.db.checkOpen(); err != nil {
		return nil, err
	}
	applied, sum, err := in.db.engine.Checksum(userRange, base.FullSpan)
	if err != nil {
		return nil, fmt.Errorf("bondkv: inspect: %w", err)
	}
	return []ReplicaState{{
		Range:              uint64(userRange),
		AppliedIndex:       applied,
		Checksum:           sum,
		SnapshotsRecovered: in.db.engine.SnapshotsRecovered(userRange),
	}}, nil
}

// ProposalStats counts the writes this node has proposed to the user range and the Raft entries
// that carried them; concurrent writes share entries, so Commands/Entries is the batching factor.
type ProposalStats = raftgroup.ProposalStats

// ProposalStats returns this node's proposal counters since it opened.
func (in *Inspector) ProposalStats() ProposalStats { return in.db.host.ProposalStats(userRange) }

// Leader returns the node ID of the user range's leader as this node knows it.
func (in *Inspector) Leader() (uint64, bool) {
	if in.db.checkOpen() != nil {
		return 0, false
	}
	l, ok := in.db.host.Leader(userRange)
	return uint64(l), ok
}

// WaitLeader waits until the user range has a leader and returns it.
func (in *Inspector) WaitLeader(ctx context.Context) (uint64, error) {
	if err := in.db.checkOpen(); err != nil {
		return 0, err
	}
	l, err := in.db.host.WaitLeader(ctx, userRange)
	return uint64(l), err
}

// TransferLeader moves the user range's leadership to node and waits until it has moved.
func (in *Inspector) TransferLeader(ctx context.Context, node uint64) error {
	if err := in.db.checkOpen(); err != nil {
		return err
	}
	return in.db.host.TransferLeader(ctx, userRange, base.NodeID(node))
}

// Compact snapshots the user range on this node and truncates its Raft log, so that a replica
// that is further behind catches up from a streamed snapshot.
func (in *Inspector) Compact(ctx context.Context) error {
	if err := in.db.checkOpen(); err != nil {
		return err
	}
	_, err := in.db.host.Compact(ctx, userRange)
	return err
}
