// Package shard turns one node's Raft groups into a multi-range store: range descriptors and
// the meta range, routing and forwarding, splits, merges, node liveness and the placement
// driver (DESIGN.md §3).
//
// # Layering
//
// shard sits between the root package and raftgroup (DESIGN.md §1). It imports raftgroup (Raft
// hosting), store (range state, commands) and internal/rpc (the node service); the root package
// builds a Node in Open and routes every request through it.
//
// # Ranges and the meta range
//
// A range is a span of user keys with a RangeID; it is the dragonboat shard with the same ID.
// Each replica keeps the range's authoritative state (span, generation, version base, frozen
// flag) in its own range-local keys (store.RangeState); splits and merges change it by Raft
// commands of the range, so every replica changes it at the same log position.
//
// Range 1 is the meta range. It has no user keys; its records are range-local records of range 1:
//
//	desc/<rangeID>  Descriptor: span, generation, replicas, policy, sticky (JSON)
//	node/<nodeID>   NodeRecord: the node directory (address, locality labels)
//	live/<nodeID>   Liveness: renewed every LivenessInterval, with the loads of the ranges the node leads
//	next-range      the next unused RangeID
//
// Descriptors are written with compare-and-put and only ever move to a higher generation, or
// to the same generation with other replicas. Of two descriptors covering one key, the one with
// the higher generation is current; a stale one left by an interrupted split or merge is
// therefore harmless. Every range's leader compares its state with meta once a second and
// republishes it (publishLocal), which repairs meta after a coordinator died between a split
// and recording it.
//
// # Routing
//
// Every node keeps the descriptors in a routing cache (refreshed every second, and at once
// after a miss or a RangeMovedError). A request goes to the local replica if the node has one,
// or is forwarded over the node service to a node that has, the known leader first. A replica
// checks every key against its current span, at apply time for writes (an entry with a key
// outside the span is applied as ResultOutOfSpan, writing nothing) and after the ReadIndex round
// for reads; a mismatch answers *RangeMovedError with the replica's span, and the router
// re-routes. Only requests that certainly did not apply are retried: a forwarded write whose
// answer was lost returns ErrAmbiguous.
//
// # Splits
//
// Split (and the automatic splits by size and by load, run by each range's leader) allocates a
// RangeID in meta, reads the range's voters and proposes one split command to the range. When
// a replica applies it, the left state shrinks, the right range's state is created beside it
// (same data keys: nothing is copied; its version base continues the left range's versions) and
// the node starts the new Raft group with the voters the command carried. Splitting at a key
// that already starts a range does nothing, so Split is idempotent; a split whose answer was
// lost is detected by looking the key up again.
//
// # Merges
//
// The placement driver merges adjacent ranges that are idle, small together (MergeSize) and not
// created by an explicit Split (sticky). It first co-locates the right range's replicas with
// the left's by ordinary moves, then freezes the right range (a command after which it refuses
// writes), checks that every replica applied the freeze and made it durable, and proposes the
// merge to the left range, which takes over the span and raises its version base above every
// version the right range wrote. Each node then stops its replica of the right range and drops
// its Raft data. A merge that cannot confirm the freeze unfreezes; a range left frozen by a
// coordinator that died is unfrozen by the next placement driver.
//
// # Placement
//
// The placement driver runs on the meta range's leader every PlacementInterval. For each range
// it wants min(Policy.Replicas or Config.Replicas, eligible live nodes) voters on nodes that carry
// the policy's locality labels. Replicas on nodes dead for DeadNodeTimeout are replaced, missing
// replicas added, extra ones removed, misplaced ones moved, and replicas balanced (a move when
// two nodes differ by two or more replicas); leaderships are balanced the same way. Every move
// is rolling: compact the voters' logs (a new replica must start from a snapshot, since a
// range's log does not reach back to its creation), add the target as a non-voting replica,
// start it there, wait until it has applied what the leader had, promote it, transfer the
// leadership if the replica to remove holds it, remove it, and tell its node to drop it. No
// step lowers the number of voters below what it was, so a range never drops below quorum.
// Moves are bounded (MaxConcurrentMoves, MovesPerMinute), logged, counted in Stats and
// reported through Config.Moved.
//
// A node that was down while its replicas were replaced finds them removed when it returns and
// drops them (replica GC, every 5 s, only once a live replica's membership lists the node as
// removed).
//
// # Caveats
//
//   - Messages between nodes are JSON; fine for control traffic and forwarding, not tuned.
//   - A multi-range Scan reads range by range, not at one instant.
//   - Liveness compares wall clocks of the writer and the placement driver: nodes must keep their
//     clocks within a fraction of DeadNodeTimeout.
//   - Moves are not yet recorded in the ledger (DESIGN.md §8); they are logged and counted.
//   - Load-based splits split at the middle key by bytes, not at a key chosen from sampled load.
//   - Data of a removed replica's span is deleted with the replica; data left outside a replica's
//     span after a lagging replica recovers a snapshot of a split range is not collected yet.
package shard
