package bench

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/bondkv/bondkv"
	"github.com/bondkv/bondkv/internal/testcluster"
)

// bondkvEngine is the product: with one node the embedded default, bondkv.Open(dir, opts) with
// zero Options but the logger (the same as nil Options, logs aside); with more, a testcluster of
// Nodes DBs in this process, which returns once they agree on a leader. Puts go round-robin to
// the nodes; a node that is not the leader forwards.
type bondkvEngine struct {
	cluster *testcluster.Cluster // nil with one node
	nodes   []*bondkv.DB
	next    atomic.Uint64
}

func (e *bondkvEngine) Open(ctx context.Context, cfg EngineConfig) error {
	if cfg.Nodes == 1 {
		db, err := bondkv.Open(cfg.Dir, &bondkv.Options{Logger: cfg.Logger})
		if err != nil {
			return err
		}
		e.nodes = []*bondkv.DB{db}
		// Open returns before the first election; the writers start when the node leads.
		wctx, cancel := context.WithTimeout(ctx, raftReadyTimeout)
		defer cancel()
		if _, err := db.Inspect().WaitLeader(wctx); err != nil {
			return fmt.Errorf("wait for a leader: %w", err)
		}
		return nil
	}
	c, err := testcluster.Start(ctx, testcluster.Config{Nodes: cfg.Nodes, Dir: cfg.Dir, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	e.cluster = c
	for i := range cfg.Nodes {
		e.nodes = append(e.nodes, c.Node(i))
	}
	return nil
}

func (e *bondkvEngine) Put(ctx context.Context, key, value []byte) error {
	i := e.next.Add(1) % uint64(len(e.nodes))
	if err := e.nodes[i].Put(ctx, key, value); err != nil {
		return fmt.Errorf("via node %d: %w", i+1, err)
	}
	return nil
}

func (e *bondkvEngine) Details() map[string]any {
	d := map[string]any{"open": "bondkv.Open"}
	if e.cluster != nil {
		d["open"] = "testcluster.Start"
	}
	if id, ok := e.nodes[0].Inspect().Leader(); ok {
		d["leader_node_id"] = id
	}
	var st bondkv.ProposalStats
	for _, n := range e.nodes {
		s := n.Inspect().ProposalStats()
		st.Entries += s.Entries
		st.Commands += s.Commands
	}
	d["raft_entries_proposed"] = st.Entries
	if st.Entries > 0 {
		d["puts_per_raft_entry"] = float64(st.Commands) / float64(st.Entries)
	}
	return d
}

func (e *bondkvEngine) Close() error {
	var err error
	switch {
	case e.cluster != nil:
		err = e.cluster.Close()
	case len(e.nodes) == 1:
		err = e.nodes[0].Close()
	}
	e.cluster, e.nodes = nil, nil
	return err
}
