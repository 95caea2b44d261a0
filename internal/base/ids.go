package base

import "strconv"

// NodeID identifies a node (one process, one DB). It doubles as the dragonboat replica ID of
// every replica that node holds, so a node has at most one replica of each range. Zero is invalid.
type NodeID uint64

// RangeID identifies a range; it is the dragonboat ShardID of the range's Raft group. Zero is
// invalid.
type RangeID uint64

// Well-known ranges (DESIGN.md §3).
const (
	// MetaRangeID is the meta range: descriptors, node directory, liveness, bindings.
	MetaRangeID RangeID = 1
	// LedgerRangeID is the ownership ledger's group.
	LedgerRangeID RangeID = 2
	// FirstUserRangeID is the first range that holds user data.
	FirstUserRangeID RangeID = 3
)

func (id NodeID) String() string  { return "n" + strconv.FormatUint(uint64(id), 10) }
func (id RangeID) String() string { return "r" + strconv.FormatUint(uint64(id), 10) }
