package testcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
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
	// Expert is passed to every node.
	Expert bondkv.ExpertOptions
}

// Cluster is a set of in-process nodes. Its methods are safe for concurrent use.
type Cluster struct {
	cfg   Config
	peers map[uint64]string

	mu    sync.Mutex
	nodes []*bondkv.DB // nil while killed
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
	c := &Cluster{cfg: cfg, peers: make(map[uint64]string), nodes: make([]*bondkv.DB, cfg.Nodes)}
	for i := 0; i < cfg.Nodes; i++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, fmt.Errorf("testcluster: %w", err)
		}
		c.peers[uint64(i+1)] = addr
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

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Size is the number of nodes, live or not.
func (c *Cluster) Size() int { return c.cfg.Nodes }

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
	db, err := bondkv.Open(c.Dir(i), &bondkv.Options{
		NodeID:     id,
		ListenAddr: c.peers[id],
		Peers:      c.peers,
		Logger:     c.cfg.Logger.With("node", id),
		Expert:     c.cfg.Expert,
		Testing:    bondkv.TestingOptions{Network: c.cfg.Network},
	})
	if err != nil {
		return fmt.Errorf("testcluster: start node %d: %w", id, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i] != nil {
		return errors.Join(fmt.Errorf("testcluster: node %d already running", id), db.Close())
	}
	c.nodes[i] = db
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
		if err := pause(ctx, 10*time.Millisecond); err != nil {
			return -1, fmt.Errorf("testcluster: no agreed leader: %w", err)
		}
	}
}

// CheckConsistency waits until every live node has applied the same Raft index and then
// compares the replicas' checksums. Call it when writes have stopped.
func (c *Cluster) CheckConsistency(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx, 30*time.Second)
	defer cancel()
	var last string
	for {
		states := make(map[int]bondkv.ReplicaState)
		for _, i := range c.Live() {
			n := c.Node(i)
			if n == nil {
				continue
			}
			rs, err := n.Inspect().Replicas()
			if err != nil {
				return fmt.Errorf("testcluster: node %d: %w", i+1, err)
			}
			states[i] = rs[0]
		}
		same, sums := true, true
		var first *bondkv.ReplicaState
		last = ""
		for i, s := range states {
			last += fmt.Sprintf(" n%d@%d:%x", i+1, s.AppliedIndex, s.Checksum[:4])
			if first == nil {
				first = &s
				continue
			}
			if s.AppliedIndex != first.AppliedIndex {
				same = false
			} else if s.Checksum != first.Checksum {
				sums = false
			}
		}
		if same && !sums {
			return fmt.Errorf("testcluster: replicas diverge at the same applied index:%s", last)
		}
		if same {
			return nil
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("testcluster: replicas did not converge (%v):%s", err, last)
		}
	}
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

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
