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
	// Join starts this node as a new member of a running cluster, which must already have added
	// it (its node ID and address) as a replica. It catches up from the others.
	Join bool
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

// ExpertOptions are rarely needed knobs; zero values select the defaults.
type ExpertOptions struct {
	// RaftTick is the Raft tick (the unit of election and heartbeat timeouts). Default 50 ms.
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
		} else if _, ok := o.Peers[o.NodeID]; !ok && !o.Join {
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
	if o.Join && o.NodeID == 0 {
		errs = append(errs, errors.New("NodeID is required with Join"))
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
