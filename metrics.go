package bondkv

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metricsCollector exports a node's state to Prometheus when it is scraped (DESIGN.md §10). It
// reads the same counters as Inspect, so it costs nothing between scrapes and nothing on the
// write path.
type metricsCollector struct {
	db *DB

	applied, leader, isLeader, entries, commands, snapshots *prometheus.Desc
	splits, merges, movesDone, movesFailed, forwarded       *prometheus.Desc
	txnCommits, txnConflicts, txnAborted, txnResolved       *prometheus.Desc
}

func newMetricsCollector(db *DB) *metricsCollector {
	node := prometheus.Labels{"node": strconv.FormatUint(db.opts.NodeID, 10)}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("bondkv_"+name, help, []string{"range"}, node)
	}
	nodeDesc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("bondkv_"+name, help, nil, node)
	}
	return &metricsCollector{
		db:          db,
		applied:     desc("range_applied_index", "Last Raft index applied to this node's replica of the range."),
		leader:      desc("range_leader_node", "Node ID of the range's leader as this node knows it (0: unknown)."),
		isLeader:    desc("range_is_leader", "1 if this node leads the range, else 0."),
		entries:     desc("range_proposed_entries_total", "Raft entries this node proposed to the range."),
		commands:    desc("range_proposed_writes_total", "Writes this node proposed to the range (several share an entry)."),
		snapshots:   desc("range_snapshots_recovered_total", "Snapshots this node's replica installed from others since the node opened."),
		splits:      nodeDesc("splits_total", "Range splits this node coordinated."),
		merges:      nodeDesc("merges_total", "Range merges this node coordinated."),
		movesDone:   nodeDesc("replica_moves_total", "Replica moves the placement driver on this node completed."),
		movesFailed: nodeDesc("replica_moves_failed_total", "Replica moves the placement driver on this node abandoned."),
		forwarded:   nodeDesc("forwarded_requests_total", "Requests this node forwarded to a node holding the range."),
		txnCommits: prometheus.NewDesc("bondkv_txn_commits_total", "Transactions this node committed, by path (1pc, 2pc, read_only).",
			[]string{"path"}, node),
		txnConflicts: nodeDesc("txn_conflicts_total", "Transaction attempts that ended in a conflict (retried or given up)."),
		txnAborted:   nodeDesc("txn_aborted_total", "Transactions that returned an error or ran out of attempts."),
		txnResolved:  nodeDesc("txn_intents_resolved_total", "Other transactions' intents this node resolved."),
	}
}

func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.applied, c.leader, c.isLeader, c.entries, c.commands, c.snapshots,
		c.splits, c.merges, c.movesDone, c.movesFailed, c.forwarded,
		c.txnCommits, c.txnConflicts, c.txnAborted, c.txnResolved} {
		ch <- d
	}
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	// Cheap reads only (no checksum, unlike Inspector.Replicas): a scrape must not scan data.
	if c.db.checkOpen() != nil {
		return
	}
	for _, lr := range c.db.host.LocalReplicas() {
		id := lr.Range
		applied, err := c.db.engine.AppliedIndex(id)
		if err != nil { // closed: nothing to report
			return
		}
		stats := c.db.host.ProposalStats(id)
		leader, _ := c.db.host.Leader(id)
		isLeader := 0.0
		if uint64(leader) == c.db.opts.NodeID {
			isLeader = 1
		}
		r := strconv.FormatUint(uint64(id), 10)
		ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(applied), r)
		ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, float64(leader), r)
		ch <- prometheus.MustNewConstMetric(c.isLeader, prometheus.GaugeValue, isLeader, r)
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.CounterValue, float64(stats.Entries), r)
		ch <- prometheus.MustNewConstMetric(c.commands, prometheus.CounterValue, float64(stats.Commands), r)
		ch <- prometheus.MustNewConstMetric(c.snapshots, prometheus.CounterValue, float64(c.db.engine.SnapshotsRecovered(id)), r)
	}
	s := c.db.node.Stats()
	ch <- prometheus.MustNewConstMetric(c.splits, prometheus.CounterValue, float64(s.Splits))
	ch <- prometheus.MustNewConstMetric(c.merges, prometheus.CounterValue, float64(s.Merges))
	ch <- prometheus.MustNewConstMetric(c.movesDone, prometheus.CounterValue, float64(s.MovesDone))
	ch <- prometheus.MustNewConstMetric(c.movesFailed, prometheus.CounterValue, float64(s.MovesFailed))
	ch <- prometheus.MustNewConstMetric(c.forwarded, prometheus.CounterValue, float64(s.Forwarded))
	t := c.db.txn.stats()
	ch <- prometheus.MustNewConstMetric(c.txnCommits, prometheus.CounterValue, float64(t.Commits1PC), "1pc")
	ch <- prometheus.MustNewConstMetric(c.txnCommits, prometheus.CounterValue, float64(t.Commits2PC), "2pc")
	ch <- prometheus.MustNewConstMetric(c.txnCommits, prometheus.CounterValue, float64(t.CommitsReadOnly), "read_only")
	ch <- prometheus.MustNewConstMetric(c.txnConflicts, prometheus.CounterValue, float64(t.Conflicts))
	ch <- prometheus.MustNewConstMetric(c.txnAborted, prometheus.CounterValue, float64(t.Aborted))
	ch <- prometheus.MustNewConstMetric(c.txnResolved, prometheus.CounterValue, float64(t.Resolved))
}
