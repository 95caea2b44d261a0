package bench

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Engine names accepted by NewEngine and PutConfig.Engine.
const (
	// EnginePebble is raw pebble/v2, every write synced: the baseline.
	EnginePebble = "pebble"
	// EngineRaftSingle is one raw dragonboat group with an in-memory state machine, replicated on
	// Nodes NodeHosts in this process, configured exactly as bondkv configures its nodes.
	EngineRaftSingle = "raft-single"
	// EngineBondKV is bondkv itself: one node (Open) or a cluster of Nodes in this process.
	EngineBondKV = "bondkv"
)

// EngineNames lists the engines in the order a comparison runs them, the baseline first.
func EngineNames() []string { return []string{EnginePebble, EngineRaftSingle, EngineBondKV} }

// EngineConfig is what an engine is opened with.
type EngineConfig struct {
	// Dir is the engine's own directory; it exists and is empty.
	Dir string
	// Nodes is the number of replicas (ignored by the single-node pebble engine).
	Nodes int
	// Logger receives the engine's logs; never nil.
	Logger *slog.Logger
	// Ranges, for engines that have ranges, is how many to pre-split the key space of Keys
	// keys ("user%012d") into before Open returns.
	Ranges int
	Keys   int64
	// Progress, if set, is told about long preparations (pre-splitting) in Open.
	Progress func(Progress)
}

// Engine is a key-value store under benchmark.
type Engine interface {
	// Open starts the engine and returns when it is ready to take writes.
	Open(ctx context.Context, cfg EngineConfig) error
	// Put durably writes one key. It is called concurrently by every writer, and must not keep
	// key or value after it returns.
	Put(ctx context.Context, key, value []byte) error
	// Details reports engine-specific figures (cumulative since Open) for the JSON report. It is
	// called once, after the writers have stopped and before Close.
	Details() map[string]any
	// Close releases everything Open acquired. It is called once, also after a failed Open.
	Close() error
}

// NewEngine returns the (unopened) engine called name.
func NewEngine(name string) (Engine, error) {
	switch name {
	case EnginePebble:
		return &pebbleEngine{}, nil
	case EngineRaftSingle:
		return &raftEngine{}, nil
	case EngineBondKV:
		return &bondkvEngine{}, nil
	}
	return nil, fmt.Errorf("unknown engine %q (want one of %s)", name, strings.Join(EngineNames(), ", "))
}
