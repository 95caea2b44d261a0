package raftgroup

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/lni/dragonboat/v4/config"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/internal/rpc"
	"github.com/bondkv/bondkv/store"
)

// Defaults of Config's timing fields.
//
// An idle replica costs CPU in proportion to ticks per second: dragonboat delivers every tick to
// every replica and steps it, and leaders heartbeat every HeartbeatRTT ticks. With 3,000
// replicas (1,000 ranges on 3 nodes in one process, 2 cores) a 50 ms tick kept 0.9 cores busy
// doing nothing; 100 ms halves that (0.49) while the election timeout stays 1 s and heartbeats
// come every 200 ms (5–10 per randomized election timeout). See ReplicaConfig on Quiesce.
const (
	DefaultRTT             = 100 * time.Millisecond
	DefaultElectionTimeout = time.Second
)

// Config configures one node's Host. The zero value of every optional field works.
type Config struct {
	// NodeID is this node's ID and the replica ID of each of its replicas. Required.
	NodeID base.NodeID
	// Dir is the node's directory; dragonboat keeps its log and metadata in Dir/raft. Required.
	Dir string
	// RaftAddress is the host:port this node's Raft transport listens on and that peers dial.
	// Required. dragonboat freezes it at first start: a restart must use the same address.
	RaftAddress string
	// Engine is the node's storage engine; the Host does not close it. Required.
	Engine *store.Engine
	// Logger receives the Host's and dragonboat's logs. nil = discard.
	Logger *slog.Logger
	// TransportFactory carries Raft messages between nodes. nil = the TCP transport of
	// internal/rpc. Tests wrap it with internal/netsim.
	TransportFactory config.TransportFactory
	// RTT is the Raft tick, the unit of the election and heartbeat timeouts. Default 100 ms.
	// dragonboat rejects a request whose deadline is shorter than one tick
	// (ErrTimeoutTooSmall).
	RTT time.Duration
	// ElectionTimeout is the Raft election timeout. Default 1 s; shorter timeouts caused
	// needless leader changes under fsync stalls on small machines.
	ElectionTimeout time.Duration
	// SnapshotEntries is how many applied entries trigger a snapshot (and log compaction).
	// Default 10,000.
	SnapshotEntries uint64
	// CompactionOverhead is how many entries are kept in the log after a snapshot so that slow
	// followers catch up from the log, not from a snapshot. Default 5,000.
	CompactionOverhead uint64
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TransportFactory == nil {
		c.TransportFactory = &rpc.RaftTransportFactory{Logger: c.Logger}
	}
	if c.RTT == 0 {
		c.RTT = DefaultRTT
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = 10000
	}
	if c.CompactionOverhead == 0 {
		c.CompactionOverhead = 5000
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.NodeID == 0 {
		errs = append(errs, errors.New("NodeID must be non-zero"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("a Dir is required"))
	}
	if c.RaftAddress == "" {
		errs = append(errs, errors.New("RaftAddress is required"))
	}
	if c.Engine == nil {
		errs = append(errs, errors.New("an Engine is required"))
	}
	if c.RTT < time.Millisecond {
		errs = append(errs, fmt.Errorf("RTT %v is below 1ms", c.RTT))
	}
	if c.ElectionTimeout < 5*c.RTT {
		errs = append(errs, fmt.Errorf("ElectionTimeout %v must be at least 5 RTTs (%v)", c.ElectionTimeout, 5*c.RTT))
	}
	return errors.Join(errs...)
}

// NodeHostConfig is the dragonboat NodeHost configuration a Host runs with (c with defaults
// filled). Exported so that baselines measure raw dragonboat under exactly the same settings.
//
// The LogDB is the tiny-memory profile with a single shard: bounded memory whatever the number of
// groups, fast start, and on one disk about twice the write throughput of the default 16 shards
// (every shard is a separate WAL to fsync).
func NodeHostConfig(c Config) config.NodeHostConfig {
	c = c.withDefaults()
	logdb := config.GetTinyMemLogDBConfig()
	logdb.Shards = 1
	return config.NodeHostConfig{
		NodeHostDir:    filepath.Join(c.Dir, "raft"),
		RTTMillisecond: uint64(c.RTT / time.Millisecond),
		RaftAddress:    c.RaftAddress,
		Expert: config.ExpertConfig{
			LogDB:            logdb,
			TransportFactory: c.TransportFactory,
		},
	}
}

// ReplicaConfig is the dragonboat configuration of this node's replica of range id.
//
// Leaders heartbeat every 2 ticks (200 ms by default). Quiesce is on: a range with no traffic for
// an election timeout stops ticking and heartbeating, so 3,000 idle replicas cost about 0.18
// cores instead of 0.45. A quiesced follower does not notice a dead leader by itself, so the
// proposer wakes a range that was quiet (a ReadIndex before the first entry after a quiet spell
// or after a timed-out proposal, proposer.wake), and any message wakes it. (An earlier 30 s
// write stall after a leader was killed, first blamed on quiesce, came from the placement
// driver handing the leadership to the dead node; TestClusterKillLeaderRestartSnapshotCatchUp
// passed 20 of 20 runs under load with quiesce on once that was fixed.)
func ReplicaConfig(c Config, id base.RangeID) config.Config {
	c = c.withDefaults()
	return config.Config{
		ReplicaID:           uint64(c.NodeID),
		ShardID:             uint64(id),
		CheckQuorum:         true,
		PreVote:             true,
		ElectionRTT:         uint64(c.ElectionTimeout / c.RTT),
		HeartbeatRTT:        2,
		SnapshotEntries:     c.SnapshotEntries,
		CompactionOverhead:  c.CompactionOverhead,
		OrderedConfigChange: true,
		Quiesce:             true,
	}
}
