package testcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/bondkv/bondkv"
	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/internal/netsim"
)

// Config describes a cluster.
type Config struct {
	// Nodes is the number of nodes (≥ 1).
	Nodes int
	// Dir holds one subdirectory per node. Required.
	Dir string
	// Logger receives every node's logs, each tagged with its node ID. nil = discard.
	Logger *slog.Logger
	// Network, if set, carries the nodes' Raft traffic (latency, partitions).
	Network *netsim.Network
	// Expert, Ranges and Txn are passed to every node.
	Expert bondkv.ExpertOptions
	Ranges bondkv.RangeOptions
	Txn    bondkv.TxnOptions
	// OnOpen, if set, is called with every node opened (at start and on Restart), under the
	// cluster's lock: it must not call the cluster.
	OnOpen func(i int, db *bondkv.DB)
}

// Cluster is a set of in-process nodes. Its methods are safe for concurrent use.
type Cluster struct {
	cfg Config

	mu     sync.Mutex
	peers  map[uint64]string // the initial members
	addrs  []string          // every node's address, joined ones included
	joined []bool            // node i joined later (AddNode) instead of forming the cluster
	nodes  []*bondkv.DB      // nil while killed
}

// Start creates the nodes' directories, opens every node and waits until the cluster has a
// leader.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("testcluster: Nodes must be ≥ 1, got %d", cfg.Nodes)
	}
	if cfg.Dir == "" {
		return nil, errors.New("testcluster: Dir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{cfg: cfg, peers: make(map[uint64]string), nodes: make([]*bondkv.DB, cfg.Nodes),
		joined: make([]bool, cfg.Nodes)}
	for i := 0; i < cfg.Nodes; i++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, fmt.Errorf("testcluster: %w", err)
		}
		c.peers[uint64(i+1)] = addr
		c.addrs = append(c.addrs, addr)
	}
	errs := make([]error, cfg.Nodes)
	var wg sync.WaitGroup
	for i := 0; i < cfg.Nodes; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Restart(i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

// issuedAddrs are the addresses freeAddr handed out in this process: the kernel may give a
// closed port out again before the node it went to has bound it.
var issuedAddrs sync.Map

func freeAddr() (string, error) {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, dup := issuedAddrs.LoadOrStore(addr, true); !dup {
			return addr, nil
		}
	}
}

// Size is the number of nodes, live or not.
func (c *Cluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// AddNode starts a new node that joins the running cluster through a live node, and returns
// its index. Replicas reach it through the placement driver.
func (c *Cluster) AddNode() (int, error) {
	addr, err := freeAddr()
	if err != nil {
		return -1, fmt.Errorf("testcluster: %w", err)
	}
	c.mu.Lock()
	i := len(c.nodes)
	c.nodes = append(c.nodes, nil)
	c.addrs = append(c.addrs, addr)
	c.joined = append(c.joined, true)
	c.mu.Unlock()
	if err := c.Restart(i); err != nil {
		return -1, err
	}
	return i, nil
}

// NodeID is the node ID of node i (i+1).
func (c *Cluster) NodeID(i int) uint64 { return uint64(i + 1) }

// Index returns the index of the node with the given ID.
func (c *Cluster) Index(id uint64) int { return int(id) - 1 }

// Dir is node i's directory.
func (c *Cluster) Dir(i int) string { return filepath.Join(c.cfg.Dir, fmt.Sprintf("n%d", i+1)) }

// Node returns node i (0 ≤ i < Size), or nil while it is killed.
func (c *Cluster) Node(i int) *bondkv.DB {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Live returns the indexes of the nodes that are running.
func (c *Cluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, n := range c.nodes {
		if n != nil {
			out = append(out, i)
		}
	}
	return out
}

// Kill stops node i abruptly as far as the cluster is concerned: its peers lose it mid-stream.
// (The process survives; a real process crash is exercised by the crash tests with child
// processes.) Its directory stays for Restart.
func (c *Cluster) Kill(i int) error {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return fmt.Errorf("testcluster: node %d is not running", i+1)
	}
	return n.Close()
}

// Restart opens node i from its directory (creating it the first time).
func (c *Cluster) Restart(i int) error {
	if err := os.MkdirAll(c.Dir(i), 0o755); err != nil {
		return err
	}
	id := c.NodeID(i)
	c.mu.Lock()
	o := &bondkv.Options{
		NodeID:     id,
		ListenAddr: c.addrs[i],
		Logger:     c.cfg.Logger.With("node", id),
		Expert:     c.cfg.Expert,
		Ranges:     c.cfg.Ranges,
		Txn:        c.cfg.Txn,
		Testing:    bondkv.TestingOptions{Network: c.cfg.Network},
	}
	if c.joined[i] {
		for j, n := range c.nodes {
			if n != nil && j != i {
				o.Join = append(o.Join, c.addrs[j])
			}
		}
	} else {
		o.Peers = c.peers
	}
	c.mu.Unlock()
	db, err := bondkv.Open(c.Dir(i), o)
	if err != nil {
		return fmt.Errorf("testcluster: start node %d: %w", id, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i] != nil {
		return errors.Join(fmt.Errorf("testcluster: node %d already running", id), db.Close())
	}
	c.nodes[i] = db
	if c.cfg.OnOpen != nil {
		c.cfg.OnOpen(i, db)
	}
	return nil
}

// Isolate cuts node i off from every other node (both directions).
func (c *Cluster) Isolate(i int) error {
	if c.cfg.Network == nil {
		return errors.New("testcluster: no simulated network configured")
	}
	c.cfg.Network.Isolate(base.NodeID(c.NodeID(i)))
	return nil
}

// HealAll restores every link.
func (c *Cluster) HealAll() error {
	if c.cfg.Network == nil {
		return errors.New("testcluster: no simulated network configured")
	}
	c.cfg.Network.HealAll()
	return nil
}

// WaitLeader waits until every live node agrees on one leader among the live nodes and returns
// its index.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	ctx, cancel := withDefaultTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		leader, agreed := uint64(0), true
		for _, i := range c.Live() {
			n := c.Node(i)
			if n == nil {
				agreed = false
				break
			}
			l, ok := n.Inspect().Leader()
			if !ok || (leader != 0 && l != leader) {
				agreed = false
				break
			}
			leader = l
		}
		if agreed && leader != 0 && c.Node(c.Index(leader)) != nil {
			return c.Index(leader), nil
		}
		if err := base.Sleep(ctx, 10*time.Millisecond); err != nil {
			return -1, fmt.Errorf("testcluster: no agreed leader: %w", err)
		}
	}
}

// CheckConsistency waits until, for every range, the replicas on the live nodes the meta range
// lists as its voters have applied the same Raft index, and then compares their checksums. Call
// it when writes and moves have stopped.
func (c *Cluster) CheckConsistency(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx, 30*time.Second)
	defer cancel()
	var last string
	for {
		done, err := c.checkOnce(ctx, &last)
		if err != nil || done {
			return err
		}
		if err := base.Sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("testcluster: replicas did not converge (%v):%s", err, last)
		}
	}
}

func (c *Cluster) checkOnce(ctx context.Context, last *string) (bool, error) {
	live := c.Live()
	if len(live) == 0 {
		return true, nil
	}
	descs, err := c.Node(live[0]).Inspect().Ranges(ctx)
	if err != nil {
		*last = err.Error()
		return false, nil
	}
	states := make(map[int]map[uint64]bondkv.ReplicaState)
	for _, i := range live {
		n := c.Node(i)
		if n == nil {
			continue
		}
		rs, err := n.Inspect().Replicas()
		if err != nil {
			return false, fmt.Errorf("testcluster: node %d: %w", i+1, err)
		}
		states[i] = make(map[uint64]bondkv.ReplicaState)
		for _, r := range rs {
			states[i][r.Range] = r
		}
	}
	*last = ""
	converged := true
	for _, d := range descs {
		var first *bondkv.ReplicaState
		for _, r := range d.Replicas {
			i := c.Index(uint64(r.Node))
			st, ok := states[i][uint64(d.RangeID)]
			if _, live := states[i]; !live {
				continue
			}
			if !ok {
				converged = false
				*last += fmt.Sprintf(" r%d:n%d-missing", d.RangeID, i+1)
				continue
			}
			*last += fmt.Sprintf(" r%d:n%d@%d:%x", d.RangeID, i+1, st.AppliedIndex, st.Checksum[:4])
			if first == nil {
				first = &st
				continue
			}
			if st.AppliedIndex != first.AppliedIndex {
				converged = false
			} else if st.Checksum != first.Checksum {
				return false, fmt.Errorf("testcluster: replicas of range %d diverge at the same applied index:%s", d.RangeID, *last)
			}
		}
	}
	return converged, nil
}

// Close closes every live node.
func (c *Cluster) Close() error {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = make([]*bondkv.DB, len(nodes))
	c.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		if n != nil {
			errs = append(errs, n.Close())
		}
	}
	return errors.Join(errs...)
}

func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// Describe returns, for every live node, each local replica's range, applied index and leader
// as that node sees it, and the node's proposal counters: what a test prints when progress
// stalls.
func (c *Cluster) Describe() string {
	var b strings.Builder
	for _, i := range c.Live() {
		db := c.Node(i)
		if db == nil {
			continue
		}
		rs, err := db.Inspect().Replicas()
		if err != nil {
			fmt.Fprintf(&b, "node %d: %v\n", i+1, err)
			continue
		}
		for _, r := range rs {
			l, ok := db.Inspect().RangeLeader(r.Range)
			fmt.Fprintf(&b, "node %d range %d: applied %d, leader %d (known %v), proposals %+v\n",
				i+1, r.Range, r.AppliedIndex, l, ok, db.Inspect().RangeProposalStats(r.Range))
		}
	}
	return b.String()
}
