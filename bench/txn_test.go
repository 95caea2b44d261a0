package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

func txnTestConfig() TxnConfig {
	c := DefaultTxnConfig()
	c.Concurrency = 4
	// Long enough that a leadership the placement driver moves for balance (which stalls a
	// range for a few hundred milliseconds, more under -race) leaves operations in every phase.
	c.Duration = time.Second
	c.Warmup = 200 * time.Millisecond
	c.KeysPerRange = 1000
	return c
}

// TestRunTxnJSON runs the benchmark on a real 3-node cluster for a moment with one and with two
// ranges per transaction, and checks the JSON and that every transaction took the commit path
// its ranges call for.
func TestRunTxnJSON(t *testing.T) {
	for _, tc := range []struct {
		rangesPerTxn int
		phases       []string
		ratios       []string
	}{
		{1, []string{PhasePut, PhaseTxn1PC}, []string{RatioTxn1PCOverPut}},
		{2, []string{PhasePut, PhaseTxn1PC, PhaseTxn2PC}, []string{RatioTxn1PCOverPut, RatioTxn2PCOverTxn1PC}},
	} {
		t.Run(fmt.Sprintf("ranges_per_txn=%d", tc.rangesPerTxn), func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			cfg := txnTestConfig()
			cfg.RangesPerTxn = tc.rangesPerTxn
			var progress []Progress
			cfg.Progress = func(p Progress) { progress = append(progress, p) }
			r, err := RunTxn(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteJSON(&buf, r); err != nil {
				t.Fatal(err)
			}
			line := buf.String()
			var fields map[string]any
			if err := json.Unmarshal([]byte(line), &fields); err != nil {
				t.Fatalf("not a JSON object: %v\n%s", err, line)
			}
			for _, k := range []string{"bench", "engine", "nodes", "concurrency", "value_size", "keys_per_range",
				"ranges", "keys_per_txn", "ranges_per_txn", "duration_s", "results", "ratios", "goals", "details"} {
				if _, ok := fields[k]; !ok {
					t.Errorf("JSON lacks %q: %s", k, line)
				}
			}
			if fields["bench"] != "txn" || fields["ranges"] != float64(tc.rangesPerTxn) || fields["keys_per_txn"] != 4.0 {
				t.Errorf("JSON does not echo the workload: %s", line)
			}
			results, _ := fields["results"].([]any)
			if len(results) != len(tc.phases) {
				t.Fatalf("%d results, want phases %v: %s", len(results), tc.phases, line)
			}
			for i, res := range results {
				p, _ := res.(map[string]any)
				if p["phase"] != tc.phases[i] {
					t.Errorf("result %d is phase %v, want %s", i, p["phase"], tc.phases[i])
				}
				for _, k := range []string{"bench", "ops", "ops_per_sec", "p50_us", "p99_us", "errors", "raft_entries", "commands_per_raft_entry"} {
					if _, ok := p[k]; !ok {
						t.Errorf("phase %v lacks %q", p["phase"], k)
					}
				}
				txn, ok := p["txn"].(map[string]any)
				if ok != (tc.phases[i] != PhasePut) {
					t.Errorf("phase %v: txn counters present %v", p["phase"], ok)
				}
				for _, k := range []string{"commits_1pc", "commits_2pc", "conflicts", "aborted", "attempts", "abort_rate", "commit_p50_us"} {
					if _, has := txn[k]; ok && !has {
						t.Errorf("phase %v: txn lacks %q", p["phase"], k)
					}
				}
			}
			ratios, _ := fields["ratios"].(map[string]any)
			goals, _ := fields["goals"].([]any)
			if len(ratios) != len(tc.ratios) || len(goals) != len(tc.ratios) {
				t.Errorf("ratios %v and goals %v, want %v", ratios, goals, tc.ratios)
			}
			for _, k := range tc.ratios {
				if q, ok := ratios[k].(map[string]any); !ok || q["ops_per_sec"].(float64) <= 0 {
					t.Errorf("ratio %s = %v", k, ratios[k])
				}
			}

			// The commit paths match the ranges each phase's transactions span.
			for _, p := range r.Results {
				if p.Ops == 0 {
					t.Errorf("%s: no operation measured (errors %d: %s)", p.Phase, p.Errors, p.FirstError)
				}
				if p.Errors != 0 { // a write cut by a leadership move ends with ErrAmbiguous
					t.Logf("%s: %d errors, the first: %s", p.Phase, p.Errors, p.FirstError)
				}
				switch c := p.Txn; p.Phase {
				case PhaseTxn1PC:
					if c.Commits1PC == 0 || c.Commits2PC != 0 {
						t.Errorf("%s: %d 1PC and %d 2PC commits, want only 1PC", p.Phase, c.Commits1PC, c.Commits2PC)
					}
				case PhaseTxn2PC:
					if c.Commits2PC == 0 || c.Commits1PC != 0 {
						t.Errorf("%s: %d 1PC and %d 2PC commits, want only 2PC", p.Phase, c.Commits1PC, c.Commits2PC)
					}
				}
				if c := p.Txn; c != nil && c.Attempts < c.Commits1PC+c.Commits2PC {
					t.Errorf("%s: %d attempts for %d commits", p.Phase, c.Attempts, c.Commits1PC+c.Commits2PC)
				}
			}
			if n := r.Details["presplit_ranges"]; tc.rangesPerTxn > 1 && n != tc.rangesPerTxn {
				t.Errorf("presplit ranges = %v, want %d", n, tc.rangesPerTxn)
			}

			// Every phase showed progress and ended with Done.
			done := map[string]bool{}
			for _, p := range progress {
				done[p.Engine] = done[p.Engine] || p.Done
			}
			for _, ph := range tc.phases {
				if !done[ph] {
					t.Errorf("no final progress of phase %s (progress: %+v)", ph, progress)
				}
			}
			var table bytes.Buffer
			if err := WriteTxnTable(&table, r); err != nil {
				t.Fatal(err)
			}
			for _, want := range append(tc.phases, tc.ratios...) {
				if !strings.Contains(table.String(), want) {
					t.Errorf("table lacks %q:\n%s", want, table.String())
				}
			}
			if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
				t.Errorf("temporary directory left behind: %v", entries)
			}
		})
	}
}

func TestTxnKeys(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	for range 2000 {
		ranges := 1 + rng.IntN(8)
		spanned := 1 + rng.IntN(ranges)
		perTxn := spanned + rng.IntN(6)
		perRange := int64(perTxn + rng.IntN(20))
		first := rng.Int64N(int64(ranges) * perRange)
		keys := txnKeys(perRange, ranges, perTxn, spanned, 1, first)
		if len(keys) != perTxn || keyNumber(keys[0]) != first {
			t.Fatalf("seed %d: txnKeys(%d, %d, %d, %d, first %d) = %q: want %d keys, the first first",
				seed, perRange, ranges, perTxn, spanned, first, keys, perTxn)
		}
		seen := map[string]bool{}
		inRange := map[int64]bool{}
		for _, k := range keys {
			n := keyNumber(k)
			if seen[string(k)] || n < 0 || n >= int64(ranges)*perRange || string(appendKey(nil, n)) != string(k) {
				t.Fatalf("seed %d: keys %q: %q repeated or out of the key space", seed, keys, k)
			}
			seen[string(k)] = true
			inRange[n/perRange] = true
		}
		if len(inRange) != spanned {
			t.Fatalf("seed %d: keys %q span %d ranges of %d keys, want %d", seed, keys, len(inRange), perRange, spanned)
		}
		if again := txnKeys(perRange, ranges, perTxn, spanned, 1, first); !equalKeys(again, keys) {
			t.Fatalf("seed %d: txnKeys is not deterministic: %q then %q", seed, keys, again)
		}
	}
	// Every other range is drawn: over many transactions from range 0, all show up.
	hit := map[int64]bool{}
	for first := range int64(200) {
		for _, k := range txnKeys(1000, 5, 4, 2, 1, first) {
			hit[keyNumber(k)/1000] = true
		}
	}
	if len(hit) != 5 {
		t.Errorf("transactions from range 0 reached ranges %v, want all 5", hit)
	}
}

func equalKeys(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestValidateTxn(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*TxnConfig)
		want string
	}{
		{"keys per txn", func(c *TxnConfig) { c.KeysPerTxn = 0 }, "keys per transaction must be between 1 and 5000, got 0"},
		{"ranges per txn", func(c *TxnConfig) { c.RangesPerTxn = 5 }, "ranges per transaction must be between 1 and keys per transaction (4), got 5"},
		{"ranges", func(c *TxnConfig) { c.RangesPerTxn, c.Ranges = 3, 2 }, "ranges (2) must be at least ranges per transaction (3)"},
		{"keys per range", func(c *TxnConfig) { c.KeysPerRange = 3 }, "keys per range must be at least keys per transaction (4), got 3"},
		{"key space", func(c *TxnConfig) { c.Ranges, c.KeysPerRange = 10, maxKeys }, "keys per range × ranges must be below"},
		{"bytes", func(c *TxnConfig) { c.KeysPerTxn, c.ValueSize = 20, 1<<20 }, "must be at most 16777216 bytes"},
		{"concurrency", func(c *TxnConfig) { c.Concurrency = 0 }, "concurrency must be at least 1, got 0"},
		{"duration", func(c *TxnConfig) { c.Duration = 0 }, "duration must be positive"},
	} {
		c := DefaultTxnConfig()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
		if _, err := RunTxn(context.Background(), c); err == nil {
			t.Errorf("%s: RunTxn ran an invalid configuration", tc.name)
		}
	}
	if err := DefaultTxnConfig().Validate(); err != nil {
		t.Errorf("default configuration: %v", err)
	}
}
