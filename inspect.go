package bondkv

import (
	"context"
	"fmt"
	"slices"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/raftgroup"
	"github.com/bondkv/bondkv/shard"
)

// Inspector gives operators, tools and tests a view into a node's replicas and a few
// administrative actions. It is not needed for normal use. Methods without a range argument
// act on the first user range (RangeID 3, which starts at the empty key and is never merged
// away).
type Inspector struct{ db *DB }

// Inspect returns the node's Inspector.
func (db *DB) Inspect() *Inspector { return &Inspector{db: db} }

// ReplicaState is the state of one replica on this node.
type ReplicaState struct {
	Range uint64
	// Start and End bound the range's keys (End nil: unbounded); Generation counts its splits
	// and merges.
	Start, End []byte
	Generation uint64
	// AppliedIndex is the last Raft index applied to this replica.
	AppliedIndex uint64
	// Checksum is a SHA-256 over the replica's data at AppliedIndex; replicas at the same
	// applied index must have equal checksums.
	Checksum [32]byte
	// SnapshotsRecovered counts the snapshots this replica has installed from other replicas
	// since the node opened (catch-up after falling behind a compacted log).
	SnapshotsRecovered uint64
}

// Replicas returns the state of every replica running on this node, by range, read from the
// local engine (not a consensus read).
func (in *Inspector) Replicas() ([]ReplicaState, error) {
	if err := in.db.checkOpen(); err != nil {
		return nil, err
	}
	var out []ReplicaState
	for _, id := range in.db.localRanges() {
		st, ok, err := in.db.engine.RangeState(id)
		if err != nil {
			return nil, fmt.Errorf("bondkv: inspect: %w", err)
		}
		if !ok {
			continue
		}
		applied, sum, err := in.db.engine.Checksum(id)
		if err != nil {
			return nil, fmt.Errorf("bondkv: inspect: %w", err)
		}
		out = append(out, ReplicaState{
			Range: uint64(id), Start: st.Span.Start, End: st.Span.End, Generation: st.Generation,
			AppliedIndex: applied, Checksum: sum, SnapshotsRecovered: in.db.engine.SnapshotsRecovered(id),
		})
	}
	return out, nil
}

// localRanges lists the ranges with a running replica here, ascending.
func (db *DB) localRanges() []base.RangeID {
	var ids []base.RangeID
	for _, lr := range db.host.LocalReplicas() {
		ids = append(ids, lr.Range)
	}
	slices.Sort(ids)
	return ids
}

// Ranges reads every range descriptor from the meta range (the meta range itself first, then
// the user ranges by start key).
func (in *Inspector) Ranges(ctx context.Context) ([]*RangeDescriptor, error) {
	if err := in.db.checkOpen(); err != nil {
		return nil, err
	}
	return in.db.node.Descriptors(ctx)
}

// Stats counts what this node did to ranges since it opened.
type Stats = shard.Stats

// Stats returns this node's range counters (splits, merges, moves, forwarded requests).
func (in *Inspector) Stats() Stats { return in.db.node.Stats() }

// ProposalStats counts the writes this node has proposed to a range and the Raft entries that
// carried them; concurrent writes share entries, so Commands/Entries is the batching factor.
type ProposalStats = raftgroup.ProposalStats

// ProposalStats returns this node's proposal counters for the first user range.
func (in *Inspector) ProposalStats() ProposalStats { return in.RangeProposalStats(uint64(userRange)) }

// RangeProposalStats returns this node's proposal counters for range id.
func (in *Inspector) RangeProposalStats(id uint64) ProposalStats {
	return in.db.host.ProposalStats(base.RangeID(id))
}

// Leader returns the node ID of the first user range's leader as this node knows it.
func (in *Inspector) Leader() (uint64, bool) { return in.RangeLeader(uint64(userRange)) }

// RangeLeader returns the node ID of range id's leader as this node knows it (only for ranges
// with a replica on this node).
func (in *Inspector) RangeLeader(id uint64) (uint64, bool) {
	if in.db.checkOpen() != nil {
		return 0, false
	}
	l, ok := in.db.host.Leader(base.RangeID(id))
	return uint64(l), ok
}

// WaitLeader waits until the first user range has a leader and returns it.
func (in *Inspector) WaitLeader(ctx context.Context) (uint64, error) {
	if err := in.db.checkOpen(); err != nil {
		return 0, err
	}
	l, err := in.db.host.WaitLeader(ctx, userRange)
	return uint64(l), err
}

// TransferLeader moves the first user range's leadership to node and waits until it has moved.
func (in *Inspector) TransferLeader(ctx context.Context, node uint64) error {
	if err := in.db.checkOpen(); err != nil {
		return err
	}
	return in.db.host.TransferLeader(ctx, userRange, base.NodeID(node))
}

// Compact snapshots the first user range on this node and truncates its Raft log, so that a
// replica that is further behind catches up from a streamed snapshot.
func (in *Inspector) Compact(ctx context.Context) error {
	if err := in.db.checkOpen(); err != nil {
		return err
	}
	_, err := in.db.host.Compact(ctx, userRange)
	return err
}

// Merge merges the range that starts at key into its left neighbour now, whatever their size
// and load. Both ranges must have their voters on the same nodes. The placement driver merges
// small idle ranges by itself; this is for tools and tests.
func (in *Inspector) Merge(ctx context.Context, key []byte) error {
	if err := in.db.checkOpen(); err != nil {
		return err
	}
	return in.db.node.Merge(ctx, key)
}

// TxnStats returns this node's transaction counters (commits by path, conflicts, aborts,
// intents resolved).
func (in *Inspector) TxnStats() TxnStats { return in.db.txn.stats() }

// ResolveIntents resolves, now, the intents of ended or expired transactions in the ranges this
// node leads (the DB does the same every Options.Txn.RecordTTL). It returns how many intents it
// found there and how many transactions still pending hold some.
func (in *Inspector) ResolveIntents(ctx context.Context) (found, pending int, err error) {
	if err := in.db.checkOpen(); err != nil {
		return 0, 0, err
	}
	return in.db.sweepIntents(ctx)
}

// IntentCount counts the intents stored on this node, in every range it holds.
func (in *Inspector) IntentCount() (int, error) {
	if err := in.db.checkOpen(); err != nil {
		return 0, err
	}
	n := 0
	for _, id := range in.db.localRanges() {
		ins, err := in.db.engine.Intents(id, 0)
		if err != nil {
			return 0, err
		}
		n += len(ins)
	}
	return n, nil
}
