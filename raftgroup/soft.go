package raftgroup

import (
	_ "unsafe" // for go:linkname

	_ "github.com/lni/dragonboat/v4" // defines the variables linked below
)

// dragonboat's per-replica queue lengths.
//
// dragonboat preallocates, for every replica it starts, a receive queue of ReceiveQueueLength
// messages (twice: two 304-byte pb.Message slices), a proposal queue of
// IncomingProposalQueueLength entries (twice, 80 bytes each) and a ReadIndex queue of
// IncomingReadIndexQueueLength pointers (twice): about 1 MiB of heap per replica with its
// defaults (1024, 2048, 4096), whatever the replica's traffic. Its only documented way to change
// them is a dragonboat-soft-settings.json in the process's working directory, read when the
// package is initialised.
//
// Nothing reads that file's values later: each dragonboat package copies the settings it needs
// into unexported package variables during its own initialisation (settings.Soft is never read
// again), and a replica's queues are sized from those variables when the replica starts. So
// raftgroup sets the variables themselves, once, in its init, which runs after dragonboat's and
// before any NodeHost can exist (no race with dragonboat's goroutines). A value that a
// dragonboat-soft-settings.json changed from dragonboat's default is left alone.
//
// bondkv's proposer keeps at most a few entries in flight per range and node, each batching many
// writes, and reads are a ReadIndex each, so short queues suffice; a full queue makes dragonboat
// return ErrSystemBusy (retried by Host) or drop a Raft message (re-sent by Raft).
//
// The linked variables are unexported, so this depends on the exact dragonboat version in
// go.mod: if one is renamed or removed, the build fails at link time; soft_test.go fails if the
// version changes (re-check the names and types, uint64, in node.go and nodehost.go, then update
// the version there) and if a replica's heap cost no longer drops.
const (
	// ReceiveQueueLength is the length of each replica's queue of incoming Raft messages
	// (dragonboat's default 1024). A full queue drops messages, which Raft only re-sends after
	// a heartbeat or probe: at 128, 64 writers on one range saw proposals time out (kvbench put:
	// dozens of errors, a third of the throughput); 256 and above did not.
	ReceiveQueueLength = 256
	// IncomingProposalQueueLength is the length of each replica's queue of proposals waiting for
	// its Raft step (dragonboat's default 2048). bondkv's proposer keeps at most two entries in
	// flight per range and node, so 64 leaves ample room; a smaller heap also means less GC work
	// (3,000 idle replicas with Quiesce on: 0.18–0.20 cores at 64, 0.21–0.23 at 256).
	IncomingProposalQueueLength = 64
	// IncomingReadIndexQueueLength is the length of each replica's queue of reads waiting for a
	// ReadIndex round (dragonboat's default 4096).
	IncomingReadIndexQueueLength = 256
	// PendingProposalShards is how many shards each replica's table of pending proposals has
	// (dragonboat's default 16). Each shard holds a math/rand source of about 5 KiB and is
	// swept on every tick; bondkv's proposer keeps at most a few proposals in flight per range
	// and node, so two shards see no contention.
	PendingProposalShards = 2
)

// dragonboat's defaults of the linked variables (internal/settings/soft.go).
const (
	dragonboatReceiveQueueLength           = 1024
	dragonboatIncomingProposalQueueLength  = 2048
	dragonboatIncomingReadIndexQueueLength = 4096
	dragonboatPendingProposalShards        = 16
)

//go:linkname receiveQueueLen github.com/lni/dragonboat/v4.receiveQueueLen
var receiveQueueLen uint64

//go:linkname incomingProposalsMaxLen github.com/lni/dragonboat/v4.incomingProposalsMaxLen
var incomingProposalsMaxLen uint64

//go:linkname incomingReadIndexMaxLen github.com/lni/dragonboat/v4.incomingReadIndexMaxLen
var incomingReadIndexMaxLen uint64

//go:linkname pendingProposalShards github.com/lni/dragonboat/v4.pendingProposalShards
var pendingProposalShards uint64

func init() { applySoftSettings() }

// applySoftSettings lowers dragonboat's per-replica queue lengths to raftgroup's, each unless a
// dragonboat-soft-settings.json changed it from dragonboat's default.
func applySoftSettings() {
	lower := func(v *uint64, dragonboatDefault, ours uint64) {
		if *v == dragonboatDefault {
			*v = ours
		}
	}
	lower(&receiveQueueLen, dragonboatReceiveQueueLength, ReceiveQueueLength)
	lower(&incomingProposalsMaxLen, dragonboatIncomingProposalQueueLength, IncomingProposalQueueLength)
	lower(&incomingReadIndexMaxLen, dragonboatIncomingReadIndexQueueLength, IncomingReadIndexQueueLength)
	lower(&pendingProposalShards, dragonboatPendingProposalShards, PendingProposalShards)
}
