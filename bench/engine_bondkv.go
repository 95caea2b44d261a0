package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

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
	// presplit is the number of ranges made before the writers started; base the nodes'
	// counters at that moment, so Details reports what happened during the run.
	presplit int
	base     bondkv.Stats
}

func (e *bondkvEngine) Open(ctx context.Context, cfg EngineConfig) error {
	if err := e.open(ctx, cfg); err != nil {
		return err
	}
	if err := e.presplitRanges(ctx, cfg); err != nil {
		return err
	}
	e.base = e.stats()
	return nil
}

// presplitRanges splits the key space into cfg.Ranges ranges of equal key count. It splits from
// the highest key down, so every split cuts the first range, which has a leader: a range just
// made by a split must first elect one (about an election timeout) before it can split again.
func (e *bondkvEngine) presplitRanges(ctx context.Context, cfg EngineConfig) error {
	if cfg.Ranges <= 1 {
		return nil
	}
	start := time.Now()
	for done := 1; done < cfg.Ranges; done++ {
		i := cfg.Ranges - done
		key := appendKey(nil, int64(i)*cfg.Keys/int64(cfg.Ranges))
		if err := e.nodes[0].Split(ctx, key); err != nil {
			return fmt.Errorf("pre-split %d ranges: at %s: %w", cfg.Ranges, key, err)
		}
		if cfg.Progress != nil && (done%20 == 0 || done == cfg.Ranges-1) {
			cfg.Progress(Progress{Engine: EngineBondKV, Elapsed: time.Since(start), Done: done == cfg.Ranges-1,
				Step: done, Steps: cfg.Ranges - 1})
		}
	}
	e.presplit = cfg.Ranges
	return nil
}

func (e *bondkvEngine) stats() bondkv.Stats {
	var s bondkv.Stats
	for _, n := range e.nodes {
		ns := n.Inspect().Stats()
		s.Splits += ns.Splits
		s.Merges += ns.Merges
		s.MovesDone += ns.MovesDone
		s.MovesFailed += ns.MovesFailed
		s.Forwarded += ns.Forwarded
	}
	return s
}

func (e *bondkvEngine) open(ctx context.Context, cfg EngineConfig) error {
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
		for _, r := range mustLocalRanges(n) {
			s := n.Inspect().RangeProposalStats(r)
			st.Entries += s.Entries
			st.Commands += s.Commands
		}
	}
	d["raft_entries_proposed"] = st.Entries
	now := e.stats()
	d["splits_during_run"] = now.Splits - e.base.Splits
	d["merges_during_run"] = now.Merges - e.base.Merges
	d["moves_during_run"] = now.MovesDone - e.base.MovesDone
	d["presplit_ranges"] = e.presplit
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ds, err := e.nodes[0].Inspect().Ranges(ctx); err == nil {
		d["range_count"] = len(ds) - 1 // the meta range holds no user keys
	}
	if st.Entries > 0 {
		d["puts_per_raft_entry"] = float64(st.Commands) / float64(st.Entries)
	}
	return d
}

// mustLocalRanges lists the ranges with a replica on n (none if n cannot say).
func mustLocalRanges(n *bondkv.DB) []uint64 {
	rs, err := n.Inspect().Replicas()
	if err != nil {
		return nil
	}
	out := make([]uint64, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Range)
	}
	return out
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
