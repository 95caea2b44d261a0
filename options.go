package bondkv

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bondkv/bondkv/internal/netsim"
	"github.com/bondkv/bondkv/raftgroup"
)

// Options configures Open. A nil *Options, or the zero value, starts a single-node cluster in the
// directory. Open never modifies the caller's struct.
type Options struct {
	// NodeID is this node's ID, unique in the cluster. Default: the ID stored in the directory,
	// or 1 for a new directory. It cannot change once the directory exists.
	NodeID uint64
	// ListenAddr is the host:port this node's Raft transport listens on and peers dial.
	// Default: the address stored in the directory, or "127.0.0.1:0" for a new one, where port
	// 0 picks a free port once and stores it. It cannot change once the directory exists.
	ListenAddr string
	// Peers are the initial voters of a cluster formed by several nodes at once: node ID →
	// ListenAddr, this node included, the same on every node. Empty: this node alone.
	// Ignored when the directory already holds a cluster.
	Peers map[uint64]string
	// Join are addresses of running nodes of a cluster this new node joins (any of them will
	// do). The node records itself in the cluster's directory; the placement driver then moves
	// replicas to it. Requires NodeID. Ignored when the directory already holds a node.
	Join []string
	// Locality labels this node (e.g. {"region": "eu", "zone": "eu-1"}); range policies can
	// require labels of their replicas' nodes.
	Locality map[string]string
	// Ranges configures splitting, merging and replica placement.
	Ranges RangeOptions
	// Txn bounds transactions (record expiry, size limits, attempts).
	Txn TxnOptions
	// Logger receives the DB's logs, dragonboat's and Pebble's included. nil = discard.
	Logger *slog.Logger
	// Metrics, if set, receives the node's Prometheus collector (per range: applied index,
	// leader, proposed entries and writes, snapshots installed), unregistered again by Close.
	// nil = no metrics.
	Metrics prometheus.Registerer

	// Expert holds rarely needed knobs.
	Expert ExpertOptions
	// Testing holds hooks for tests and benchmarks; leave it zero in production.
	Testing TestingOptions
}

// RangeOptions configures how ranges split, merge and are placed. Zero values select the
// defaults.
type RangeOptions struct {
	// Replicas is the number of voting replicas per range. Default 3 (fewer while fewer nodes
	// are live).
	Replicas int
	// SplitSize: a range holding more data than this (bytes, as Pebble estimates it) splits at
	// its middle key. Default 64 MiB.
	SplitSize uint64
	// SplitEntriesPerSecond: a range whose leader applies more Raft entries per second than
	// this for three consecutive seconds splits at its middle key. Default 5,000 (a Raft entry
	// carries a batch of writes: splitting costs that batching, and on a small machine ten
	// ranges took fewer writes than one, see the README); negative
	// disables load-based splits.
	SplitEntriesPerSecond float64
	// MergeSize: two adjacent ranges that are idle (at most one entry per second), were not
	// created by an explicit Split, and together hold less than this merge. Default 16 MiB;
	// negative disables merges.
	MergeSize int64
	// DeadNodeTimeout: a node that has not renewed its liveness record for this long is dead,
	// and its replicas are replaced on other nodes. Default 30 s.
	DeadNodeTimeout time.Duration
	// MaxStaleness bounds how far behind a read of a range with Eventual consistency may be
	// (Get on such a range reads the nearest replica). Default 2 s.
	MaxStaleness time.Duration
}

const defaultMaxStaleness = 2 * time.Second

// ExpertOptions are rarely needed knobs; zero values select the defaults.
type ExpertOptions struct {
	// LivenessInterval is how often a node renews its liveness record. Default 1 s.
	LivenessInterval time.Duration
	// PlacementInterval is how often the placement driver looks at the cluster. Default 1 s.
	PlacementInterval time.Duration
	// MaxConcurrentMoves bounds the replica moves in flight. Default 2.
	MaxConcurrentMoves int
	// MovesPerMinute rate-limits replica moves. Default 60.
	MovesPerMinute int
	// RaftTick is the Raft tick (the unit of election and heartbeat timeouts). Default 100 ms.
	RaftTick time.Duration
	// ElectionTimeout is the Raft election timeout. Default 1 s.
	ElectionTimeout time.Duration
	// SnapshotEntries: a replica snapshots (and compacts its log) every this many entries.
	// Default 10,000.
	SnapshotEntries uint64
	// CompactionOverhead: entries kept in the log after a snapshot. Default 5,000.
	CompactionOverhead uint64
	// CacheSize is Pebble's block cache, in bytes. Default 64 MiB.
	CacheSize int64
	// MemTableSize is the size of one Pebble memtable, in bytes. Default 32 MiB: every
	// replicated write lands in it, and larger memtables mean fewer flushes and compactions
	// (about 9 % less CPU per write than Pebble's 4 MiB default in kvbench put).
	MemTableSize int64
}

// defaultMemTableSize is ExpertOptions.MemTableSize's default.
const defaultMemTableSize = 32 << 20

// TestingOptions are hooks for tests and benchmarks.
type TestingOptions struct {
	// Network, if set, carries this node's Raft traffic through a simulated network (latency,
	// bandwidth, partitions).
	Network *netsim.Network
	// FS replaces the file system Pebble uses (error injection, crash simulation).
	FS vfs.FS
}

// validate reports every problem with o at once; it neither logs nor mutates.
func (o *Options) validate() error {
	var errs []error
	if o.ListenAddr != "" {
		if _, _, err := net.SplitHostPort(o.ListenAddr); err != nil {
			errs = append(errs, fmt.Errorf("ListenAddr %q: %v", o.ListenAddr, err))
		}
	}
	if len(o.Peers) > 0 {
		if o.NodeID == 0 {
			errs = append(errs, errors.New("NodeID is required with Peers"))
		} else if _, ok := o.Peers[o.NodeID]; !ok {
			errs = append(errs, fmt.Errorf("option Peers does not include this node (%d)", o.NodeID))
		}
		for id, addr := range o.Peers {
			if id == 0 {
				errs = append(errs, errors.New("option Peers: node ID 0 is invalid"))
			}
			if _, _, err := net.SplitHostPort(addr); err != nil {
				errs = append(errs, fmt.Errorf("option Peers[%d] %q: %v", id, addr, err))
			}
		}
	}
	if addr, ok := o.Peers[o.NodeID]; ok && o.ListenAddr != "" && o.ListenAddr != addr {
		errs = append(errs, fmt.Errorf("ListenAddr %s differs from this node's address in Peers (%s)", o.ListenAddr, addr))
	}
	if len(o.Join) > 0 {
		if o.NodeID == 0 {
			errs = append(errs, errors.New("NodeID is required with Join"))
		}
		if len(o.Peers) > 0 {
			errs = append(errs, errors.New("options Peers and Join exclude each other: Peers forms a new cluster, Join enters a running one"))
		}
		for _, a := range o.Join {
			if _, _, err := net.SplitHostPort(a); err != nil {
				errs = append(errs, fmt.Errorf("option Join %q: %v", a, err))
			}
		}
	}
	if o.Ranges.Replicas < 0 || o.Ranges.DeadNodeTimeout < 0 || o.Ranges.MaxStaleness < 0 || o.Expert.LivenessInterval < 0 || o.Expert.PlacementInterval < 0 ||
		o.Expert.MaxConcurrentMoves < 0 || o.Expert.MovesPerMinute < 0 {
		errs = append(errs, errors.New("option Ranges/Expert: counts and durations must not be negative"))
	}
	if o.Txn.RecordTTL < 0 || o.Txn.MaxKeys < 0 || o.Txn.MaxBytes < 0 || o.Txn.MaxAttempts < 0 {
		errs = append(errs, errors.New("option Txn: limits and durations must not be negative"))
	}
	if o.Expert.RaftTick < 0 || o.Expert.ElectionTimeout < 0 || o.Expert.CacheSize < 0 || o.Expert.MemTableSize < 0 {
		errs = append(errs, errors.New("option Expert: durations and sizes must not be negative"))
	} else {
		tick, election := o.Expert.RaftTick, o.Expert.ElectionTimeout
		if tick == 0 {
			tick = raftgroup.DefaultRTT
		}
		if election == 0 {
			election = raftgroup.DefaultElectionTimeout
		}
		if tick < time.Millisecond {
			errs = append(errs, fmt.Errorf("Expert.RaftTick %v is below 1ms", tick))
		}
		if election < 5*tick {
			errs = append(errs, fmt.Errorf("Expert.ElectionTimeout %v must be at least 5 Raft ticks (%v)", election, 5*tick))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
}
