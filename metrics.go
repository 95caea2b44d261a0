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
}

func newMetricsCollector(db *DB) *metricsCollector {
	node := prometheus.Labels{"node": strconv.FormatUint(db.opts.NodeID, 10)}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("bondkv_"+name, help, []string{"range"}, node)
	}
	return &metricsCollector{
		db:        db,
		applied:   desc("range_applied_index", "Last Raft index applied to this node's replica of the range."),
		leader:    desc("range_leader_node", "Node ID of the range's leader as this node knows it (0: unknown)."),
		isLeader:  desc("range_is_leader", "1 if this node leads the range, else 0."),
		entries:   desc("range_proposed_entries_total", "Raft entries this node proposed to the range."),
		commands:  desc("range_proposed_writes_total", "Writes this node proposed to the range (several share an entry)."),
		snapshots: desc("range_snapshots_recovered_total", "Snapshots this node's replica installed from others since the node opened."),
	}
}

func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.applied, c.leader, c.isLeader, c.entries, c.commands, c.snapshots} {
		ch <- d
	}
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	// Cheap reads only (no checksum, unlike Inspector.Replicas): a scrape must not scan data.
	applied, err := c.db.engine.AppliedIndex(userRange)
	if err != nil { // closed: nothing to report
		return
	}
	in := c.db.Inspect()
	stats := in.ProposalStats()
	leader, _ := in.Leader()
	isLeader := 0.0
	if leader == c.db.opts.NodeID {
		isLeader = 1
	}
	r := strconv.FormatUint(uint64(userRange), 10)
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(applied), r)
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, float64(leader), r)
	ch <- prometheus.MustNewConstMetric(c.isLeader, prometheus.GaugeValue, isLeader, r)
	ch <- prometheus.MustNewConstMetric(c.entries, prometheus.CounterValue, float64(stats.Entries), r)
	ch <- prometheus.MustNewConstMetric(c.commands, prometheus.CounterValue, float64(stats.Commands), r)
	ch <- prometheus.MustNewConstMetric(c.snapshots, prometheus.CounterValue, float64(c.db.engine.SnapshotsRecovered(userRange)), r)
}
