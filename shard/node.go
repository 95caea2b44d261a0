package shard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/internal/rpc"
	"github.com/bondkv/bondkv/raftgroup"
	"github.com/bondkv/bondkv/store"
)

// Defaults of Config's tunables.
const (
	DefaultReplicas          = 3
	DefaultLivenessInterval  = time.Second
	DefaultDeadNodeTimeout   = 30 * time.Second
	DefaultPlacementInterval = time.Second
	DefaultSplitSize         = 64 << 20
	DefaultSplitEntriesPerS  = 5000
	DefaultMergeSize         = 16 << 20
	DefaultMaxMoves          = 2
	DefaultMovesPerMinute    = 60
)

// Config configures a Node. Engine, Host, Server, Client, NodeID and Addr are required.
type Config struct {
	NodeID base.NodeID
	// Addr is the address other nodes reach this node at (Raft and the node service).
	Addr     string
	Locality map[string]string
	Engine   *store.Engine
	Host     *raftgroup.Host
	Server   *rpc.Server
	Client   *rpc.Client
	Logger   *slog.Logger

	// Bootstrap, for a node that creates the cluster, are the initial voters of the meta range
	// and of the first user range (this node included). Empty with Join set.
	Bootstrap map[base.NodeID]string
	// Join are addresses of running nodes, for a node joining an existing cluster.
	Join []string

	// Replicas is the default number of voters per range (3). Ranges get fewer while fewer
	// nodes are live.
	Replicas int
	// LivenessInterval is how often the node records that it is alive (1 s).
	LivenessInterval time.Duration
	// DeadNodeTimeout: a node whose liveness record is older than this is dead, and its
	// replicas are replaced (30 s).
	DeadNodeTimeout time.Duration
	// PlacementInterval is how often the placement driver (on the meta leader) looks at the
	// cluster (1 s).
	PlacementInterval time.Duration
	// SplitSize: a range whose data is larger splits at its middle key (64 MiB).
	SplitSize uint64
	// SplitEntriesPerSecond: a range applying more Raft entries per second than this, over
	// three consecutive looks, splits at its middle key (5,000). Negative disables load splits.
	SplitEntriesPerSecond float64
	// MergeSize: adjacent ranges, neither created by an explicit Split, both idle and together
	// smaller than this, merge (16 MiB). Negative disables merges.
	MergeSize int64
	// MaxConcurrentMoves bounds the replica moves in flight (2); MovesPerMinute rate-limits
	// them (60).
	MaxConcurrentMoves int
	MovesPerMinute     int
	// Moved, if set, is told about every move the placement driver completes or abandons.
	Moved func(MoveEvent)
}

// MoveEvent describes one replica move of the placement driver.
type MoveEvent struct {
	Range    base.RangeID
	From, To base.NodeID // From 0: an added replica; To 0: a removed one
	Reason   string
	Err      error
	Took     time.Duration
}

func (c *Config) withDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Replicas <= 0 {
		c.Replicas = DefaultReplicas
	}
	if c.LivenessInterval <= 0 {
		c.LivenessInterval = DefaultLivenessInterval
	}
	if c.DeadNodeTimeout <= 0 {
		c.DeadNodeTimeout = DefaultDeadNodeTimeout
	}
	if c.PlacementInterval <= 0 {
		c.PlacementInterval = DefaultPlacementInterval
	}
	if c.SplitSize == 0 {
		c.SplitSize = DefaultSplitSize
	}
	if c.SplitEntriesPerSecond == 0 {
		c.SplitEntriesPerSecond = DefaultSplitEntriesPerS
	}
	if c.MergeSize == 0 {
		c.MergeSize = DefaultMergeSize
	}
	if c.MaxConcurrentMoves <= 0 {
		c.MaxConcurrentMoves = DefaultMaxMoves
	}
	if c.MovesPerMinute <= 0 {
		c.MovesPerMinute = DefaultMovesPerMinute
	}
}

// Stats counts what this node did to ranges since it started.
type Stats struct {
	Splits, Merges, MovesDone, MovesFailed, Forwarded uint64
}

// Node is one node's view of the ranges: routing, forwarding, the meta range, splits, merges,
// and, while it leads the meta range, placement.
type Node struct {
	cfg    Config
	log    *slog.Logger
	engine *store.Engine
	host   *raftgroup.Host
	client *rpc.Client

	cache *rangeCache

	dirMu     sync.Mutex
	directory map[base.NodeID]NodeRecord // node directory as last read from meta
	metaAddrs map[base.NodeID]string     // meta voters as last learned

	splits, merges, movesDone, movesFailed, forwarded atomic.Uint64

	events chan raftgroup.Event
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	driver *driver
	loads  *loadTracker

	closeMu sync.Mutex
	closed  bool

	mergedMu sync.Mutex
	merged   map[base.RangeID]bool // ranges merged away on this node since it started
}

// NodeRecord is a node's entry in the directory (meta range).
type NodeRecord struct {
	NodeID   base.NodeID       `json:"node_id"`
	Addr     string            `json:"addr"`
	Locality map[string]string `json:"locality,omitempty"`
}

// Liveness is a node's liveness record: written every LivenessInterval, with what the node
// leads so that the placement driver can balance without asking every node.
type Liveness struct {
	NodeID   base.NodeID `json:"node_id"`
	UnixNano int64       `json:"t"`
	Replicas int         `json:"replicas"`
	Leading  []RangeLoad `json:"leading,omitempty"`
}

// RangeLoad is what a range's leader reports about it.
type RangeLoad struct {
	Range         base.RangeID `json:"range"`
	Size          uint64       `json:"size"`
	EntriesPerSec float64      `json:"eps"`
	Frozen        bool         `json:"frozen,omitempty"`
}

// bootRecordKey is the node-local key holding the initial members of ranges this node must
// bootstrap (created by a split here) until dragonboat has recorded them.
func bootRecordKey(id base.RangeID) string { return fmt.Sprintf("boot/%d", id) }

// New makes the node and registers its handlers on cfg.Server, which must not serve yet. Start
// it (after the server serves: peers call it while it starts) with Start, or drop it with Close.
func New(cfg Config) *Node {
	cfg.withDefaults()
	n := &Node{
		cfg: cfg, log: cfg.Logger, engine: cfg.Engine, host: cfg.Host, client: cfg.Client,
		cache:     newRangeCache(),
		directory: make(map[base.NodeID]NodeRecord),
		metaAddrs: make(map[base.NodeID]string),
		events:    make(chan raftgroup.Event, 1024),
		loads:     newLoadTracker(),
		merged:    make(map[base.RangeID]bool),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.driver = newDriver(n)
	n.registerHandlers(cfg.Server)
	return n
}

// Start brings the node's ranges up: it bootstraps a new cluster (Config.Bootstrap), joins one
// (Config.Join) or restarts the replicas the engine holds, and starts the background work
// (liveness, descriptor publishing, splits, replica GC, placement). On error the node is closed.
func (n *Node) Start() error {
	cfg := n.cfg
	n.host.SetEvents(func(e raftgroup.Event) {
		select {
		case n.events <- e:
		default:
			// Never block the apply path: handle it on a goroutine of its own.
			n.closeMu.Lock()
			defer n.closeMu.Unlock()
			if n.closed {
				return
			}
			n.wg.Add(1)
			go func() { defer n.wg.Done(); n.handleEvent(e) }()
		}
	})
	n.wg.Add(1)
	go n.eventLoop()

	ids, err := n.engine.Ranges()
	if err != nil {
		n.Close()
		return err
	}
	switch {
	case len(ids) == 0 && len(cfg.Bootstrap) > 0:
		err = n.bootstrap()
	case len(ids) == 0 && len(cfg.Join) > 0:
		err = n.join()
	case len(ids) == 0:
		err = errors.New("shard: a new node needs Bootstrap members or Join addresses")
	default:
		err = n.restart(ids)
	}
	if err != nil {
		n.Close()
		return err
	}
	n.startLoops()
	return nil
}

func (n *Node) bootstrap() error {
	// The members are recorded first: a crash before dragonboat has recorded them restarts the
	// bootstrap from here (see restart).
	for _, id := range []base.RangeID{base.MetaRangeID, base.FirstUserRangeID} {
		if err := n.engine.PutNodeLocal(bootRecordKey(id), mustJSON(bootMembers(n.cfg.Bootstrap))); err != nil {
			return err
		}
	}
	for id, st := range map[base.RangeID]store.RangeState{
		base.MetaRangeID:      {Span: base.NoSpan, Generation: 1},
		base.FirstUserRangeID: {Span: base.FullSpan, Generation: 1},
	} {
		if err := n.engine.InitRange(id, st); err != nil {
			return err
		}
	}
	for _, id := range []base.RangeID{base.MetaRangeID, base.FirstUserRangeID} {
		if err := n.host.StartReplica(raftgroup.Replica{Range: id, Members: bootMembers(n.cfg.Bootstrap)}); err != nil {
			return err
		}
	}
	n.dirMu.Lock()
	for id, a := range n.cfg.Bootstrap {
		n.metaAddrs[id] = a
	}
	n.dirMu.Unlock()
	// Seed the meta range: every bootstrapping node tries, the first write of each record wins.
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	var replicas []Replica
	for id := range n.cfg.Bootstrap {
		replicas = append(replicas, Replica{Node: id})
	}
	for _, d := range []*Descriptor{
		{RangeID: base.MetaRangeID, Start: []byte{}, End: []byte{}, Generation: 1, Replicas: replicas},
		{RangeID: base.FirstUserRangeID, Generation: 1, Replicas: replicas},
	} {
		sortReplicas(d.Replicas)
		if err := n.metaCPut(ctx, descKey(d.RangeID), encodeDescriptor(d), nil); err != nil && !errors.Is(err, ErrConditionFailed) {
			return fmt.Errorf("shard: seed meta: %w", err)
		}
	}
	if err := n.metaCPut(ctx, nextRangeKey, encodeUint(uint64(base.FirstUserRangeID)+1), nil); err != nil && !errors.Is(err, ErrConditionFailed) {
		return fmt.Errorf("shard: seed meta: %w", err)
	}
	return n.register(ctx)
}

func (n *Node) join() error {
	ctx, cancel := context.WithTimeout(n.ctx, 60*time.Second)
	defer cancel()
	for {
		for _, addr := range n.cfg.Join {
			if err := n.learnMeta(ctx, addr); err != nil {
				n.log.Warn("join: seed not reachable", "seed", addr, "err", err)
			}
		}
		if n.haveMetaAddrs() {
			if err := n.register(ctx); err == nil {
				return nil
			} else {
				n.log.Warn("join: register", "err", err)
			}
		}
		if err := base.Sleep(ctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("shard: join via %v: %w", n.cfg.Join, err)
		}
	}
}

func (n *Node) restart(ids []base.RangeID) error {
	for _, id := range ids {
		r := raftgroup.Replica{Range: id}
		if !n.host.Bootstrapped(id) {
			members, ok := n.bootRecord(id)
			if !ok {
				// A range a split created here, whose Raft group had not started yet: the split
				// stored its voters beside its state.
				members, ok = n.splitMembers(id)
			}
			if !ok {
				// State without a Raft replica: a joining replica that crashed before its first
				// snapshot completed, or leftovers. The placement driver re-adds it if needed.
				n.log.Info("dropping range state without a replica", "range", id)
				if err := n.engine.DestroyRange(id); err != nil {
					return err
				}
				continue
			}
			r.Members = members
			for rid := range members {
				if raftgroup.NodeOf(rid) == n.cfg.NodeID {
					r.ReplicaID = rid
				}
			}
			if r.ReplicaID == 0 {
				n.log.Info("dropping range state: this node is not among its initial members", "range", id)
				if err := n.engine.DestroyRange(id); err != nil {
					return err
				}
				continue
			}
		}
		if err := n.host.StartReplica(r); err != nil {
			return err
		}
		if id == base.MetaRangeID {
			n.noteMetaFromLocal()
		}
	}
	if hint, err := n.engine.GetNodeLocal("meta-hint"); err == nil {
		var addrs map[base.NodeID]string
		if json.Unmarshal(hint, &addrs) == nil {
			n.dirMu.Lock()
			for id, a := range addrs {
				if _, ok := n.metaAddrs[id]; !ok {
					n.metaAddrs[id] = a
				}
			}
			n.dirMu.Unlock()
		}
	}
	return nil
}

// register writes this node's directory record.
func (n *Node) register(ctx context.Context) error {
	rec := NodeRecord{NodeID: n.cfg.NodeID, Addr: n.cfg.Addr, Locality: n.cfg.Locality}
	if err := n.metaPut(ctx, nodeKey(n.cfg.NodeID), mustJSON(rec)); err != nil {
		return err
	}
	return n.heartbeat(ctx)
}

// bootMembers turns initial voters by node into voters by replica ID (the first replica of a
// range on a node has the node's ID).
func bootMembers(nodes map[base.NodeID]string) map[uint64]string {
	out := make(map[uint64]string, len(nodes))
	for id, a := range nodes {
		out[uint64(id)] = a
	}
	return out
}

// splitMembers returns the initial voters a split stored with range id's state.
func (n *Node) splitMembers(id base.RangeID) (map[uint64]string, bool) {
	m, ok, err := n.engine.SplitMembers(id)
	if err != nil || !ok {
		return nil, false
	}
	out := make(map[uint64]string, len(m))
	for rid, a := range m {
		out[uint64(rid)] = a
	}
	return out, true
}

func (n *Node) bootRecord(id base.RangeID) (map[uint64]string, bool) {
	raw, err := n.engine.GetNodeLocal(bootRecordKey(id))
	if err != nil {
		return nil, false
	}
	var m map[uint64]string
	if json.Unmarshal(raw, &m) != nil || len(m) == 0 {
		return nil, false
	}
	return m, true
}

// NodeID is this node's ID.
func (n *Node) NodeID() base.NodeID { return n.cfg.NodeID }

// Stats returns this node's counters.
func (n *Node) Stats() Stats {
	return Stats{Splits: n.splits.Load(), Merges: n.merges.Load(), MovesDone: n.movesDone.Load(),
		MovesFailed: n.movesFailed.Load(), Forwarded: n.forwarded.Load()}
}

// Close stops the background work. It does not close the Host, the engine or the RPC pieces.
func (n *Node) Close() {
	n.closeMu.Lock()
	n.closed = true
	n.closeMu.Unlock()
	n.cancel()
	n.wg.Wait()
}

func (n *Node) eventLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case e := <-n.events:
			n.handleEvent(e)
		}
	}
}

// handleEvent acts on a split or merge this node's replica applied.
func (n *Node) handleEvent(e raftgroup.Event) {
	ctx := n.ctx
	switch {
	case e.Split != nil:
		s := e.Split
		// The split command carries the new range's voters by replica ID: this node's replica
		// keeps the ID it has in the left range.
		members := make(map[uint64]string, len(s.Members))
		var self uint64
		for rid, a := range s.Members {
			members[uint64(rid)] = a
			if raftgroup.NodeOf(uint64(rid)) == n.cfg.NodeID {
				self = uint64(rid)
			}
		}
		if self == 0 {
			n.log.Info("split: this node is not a member of the new range", "range", s.Right)
			return
		}
		if !n.host.Bootstrapped(s.Right) {
			if err := n.engine.PutNodeLocal(bootRecordKey(s.Right), mustJSON(members)); err != nil {
				n.log.Error("split: record members", "range", s.Right, "err", err)
				return
			}
		}
		if err := n.host.StartReplica(raftgroup.Replica{Range: s.Right, ReplicaID: self, Members: members}); err != nil {
			if !errors.Is(err, base.ErrClosed) {
				n.log.Error("split: start new range", "range", s.Right, "err", err)
			}
			return
		}
		n.log.Info("range split", "left", s.Left, "right", s.Right, "at", fmt.Sprintf("%q", s.RightState.Span.Start))
	case e.Merge != nil:
		m := e.Merge
		n.mergedMu.Lock()
		n.merged[m.Right] = true
		n.mergedMu.Unlock()
		n.cache.remove(m.Right)
		n.log.Info("ranges merged", "left", m.Left, "right", m.Right)
		// Writes still in flight to the right range end as frozen (and are retried on the left
		// one) while its replica runs; stopping it under them would make their outcome unknown.
		// That wait must not hold up the events behind this one.
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			// The other replicas keep the right range's quorum a moment longer, so that
			// entries in flight are refused as frozen rather than left hanging.
			if base.Sleep(n.ctx, 300*time.Millisecond) != nil {
				return
			}
			n.drain(m.Right)
			if err := n.host.DestroyReplica(ctx, m.Right); err != nil && !errors.Is(err, base.ErrClosed) {
				n.log.Error("merge: stop merged range", "range", m.Right, "err", err)
				return
			}
			if err := n.engine.DestroyRange(m.Right); err != nil && !errors.Is(err, base.ErrClosed) {
				n.log.Error("merge: drop merged range state", "range", m.Right, "err", err)
			}
		}()
	}
}

// wasMerged reports whether range id was merged away on this node.
func (n *Node) wasMerged(id base.RangeID) bool {
	n.mergedMu.Lock()
	defer n.mergedMu.Unlock()
	return n.merged[id]
}

// drain waits (up to 5 s) until this node has no write to range id queued or in flight.
func (n *Node) drain(id base.RangeID) {
	deadline := time.Now().Add(5 * time.Second)
	for n.host.Busy(id) && time.Now().Before(deadline) {
		if base.Sleep(n.ctx, 10*time.Millisecond) != nil {
			return
		}
	}
}
