package bondkv_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bondkv/bondkv"
)

// gather returns the value of every bondkv metric in reg, by name.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "range" && l.GetValue() != "3" {
					continue metrics // the meta range's own traffic (liveness) varies
				}
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out[mf.GetName()] += v
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	db := openT(t, t.TempDir(), &bondkv.Options{Metrics: reg, Expert: fastExpert})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := db.Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	m := gather(t, reg)
	if m["bondkv_range_proposed_writes_total"] != 3 || m["bondkv_range_proposed_entries_total"] < 1 ||
		m["bondkv_range_is_leader"] != 1 || m["bondkv_range_leader_node"] != 1 || m["bondkv_range_applied_index"] < 3 {
		t.Fatalf("metrics after 3 writes: %v", m)
	}
	if err := db.Update(ctx, func(tx *bondkv.Txn) error { return tx.Put([]byte("t"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if m := gather(t, reg); m["bondkv_txn_commits_total"] != 1 {
		t.Fatalf("metrics after one transaction: %v", m)
	}
	db.Close() // unregisters
	if m := gather(t, reg); len(m) != 0 {
		t.Fatalf("metrics left after Close: %v", m)
	}
}
