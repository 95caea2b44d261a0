// Package raftgroup hosts the Raft groups of one node on dragonboat v4.
//
// Layering (DESIGN.md §1): raftgroup imports store and internal/{base,rpc}; shard/ and the root
// package build on it. It knows ranges only as (RangeID, span) pairs.
//
// One Host per node wraps one dragonboat NodeHost. Every replica on the node is an
// IOnDiskStateMachine over the node's single store.Engine:
//
//   - Update applies a batch of committed entries and the range's applied index in one Pebble
//     batch (no fsync); Sync fsyncs the engine's WAL; Open returns the stored applied index, so
//     after a crash dragonboat replays exactly the entries after it. Applying is idempotent by
//     index, which is what makes dragonboat's no-op sessions (no exactly-once dedup) safe.
//   - Snapshots stream the range's spans from a Pebble snapshot (SaveSnapshot) and replace them on
//     the receiver (RecoverFromSnapshot); a lagging or new replica catches up this way when the
//     leader's log no longer holds what it needs.
//   - Reads (Host.Read) run after a ReadIndex round: linearizable.
//   - Writes (Host.Propose) are batched per range by a proposer: at most a few entries in flight,
//     each carrying whatever writes arrived meanwhile. A write whose outcome is unknown is
//     reported with base.ErrAmbiguous, never retried blindly.
//
// Membership: AddVoter, AddNonVoting, Promote, RemoveReplica (all ordered by the config change ID
// and idempotent), TransferLeader (re-issued until it takes: dragonboat drops some requests).
// Replica IDs carry the node ID in their low 32 bits and an incarnation in the high 32
// (replicaid.go), so a node can hold a range again after its replica moved away (dragonboat
// never lets a removed replica ID back). A replica's splits and merges reach the node through
// SetEvents; DestroyReplica drops dragonboat's data of a replica that left the node.
//
// Configuration (config.go): a tiny-memory LogDB with one shard — bounded memory for many groups
// and one WAL to fsync —, a 100 ms tick, a 1 s election timeout, Quiesce on (see ReplicaConfig),
// and smaller per-replica queues than dragonboat's defaults (soft.go; no settings file). After a
// quiet spell the proposer confirms a live leader with a ReadIndex before proposing. dragonboat's process-wide
// logging is routed into the node's *slog.Logger (logging.go), mapped to quieter levels so a
// logger at Info stays silent in normal operation. The Raft transport is internal/rpc's TCP transport unless Config.TransportFactory
// says otherwise (tests wrap it with internal/netsim).
//
// Frozen at first start (dragonboat refuses to restart otherwise): RaftAddress, the LogDB shard
// count and the host name, which is part of dragonboat's on-disk path.
package raftgroup
