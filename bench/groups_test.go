package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestRunGroups(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var phases []string
	cfg := GroupsConfig{Count: 5, Idle: 200 * time.Millisecond, Settle: 100 * time.Millisecond, Write: true,
		Throughput: 300 * time.Millisecond, Writers: 8, HotGroups: 2}
	cfg.Progress = func(p GroupsProgress) {
		if p.Finished {
			phases = append(phases, "finished")
		} else if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	}
	r, err := RunGroups(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}

	// The JSON form has the documented fields.
	var out bytes.Buffer
	if err := WriteJSON(&out, r); err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(out.Bytes(), &fields); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, out.String())
	}
	for _, k := range []string{"bench", "groups", "nodes", "replicas", "create_s", "rss_before_mib", "rss_after_mib",
		"rss_per_group_mib", "rss_per_replica_mib", "heap_per_replica_mib", "goroutines", "idle_cores", "writes_ok",
		"all", "hot", "hot_over_all"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out.String())
		}
	}
	var got GroupsResult
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Bench != "groups" || got.Groups != 5 || got.Nodes != 3 || got.Replicas != 15 || got.RTTMs != 100 ||
		got.ElectionRTT != 10 || got.HeartbeatRTT != 2 || !got.Quiesce {
		t.Errorf("result does not echo the configuration: %s", out.String())
	}
	// Sane, not a speed target: a leader per group takes at least part of an election timeout.
	if got.CreateS <= 0 || got.StartS > got.CreateS || got.HostS <= 0 {
		t.Errorf("host_s %v, start_s %v, create_s %v: want 0 < start_s <= create_s, host_s > 0", got.HostS, got.StartS, got.CreateS)
	}
	if got.RSSBeforeMiB <= 0 || got.RSSAfterMiB < got.RSSBeforeMiB {
		t.Errorf("rss before %v, after %v MiB: want 0 < before <= after", got.RSSBeforeMiB, got.RSSAfterMiB)
	}
	if want := round3((got.RSSAfterMiB - got.RSSBeforeMiB) / 5); got.RSSPerGroupMiB < want-0.01 || got.RSSPerGroupMiB > want+0.01 {
		t.Errorf("rss per group %v, want (after - before)/5 = %v", got.RSSPerGroupMiB, want)
	}
	if want := round3((got.RSSAfterMiB - got.RSSBeforeMiB) / 15); got.RSSPerReplicaMiB < want-0.01 || got.RSSPerReplicaMiB > want+0.01 {
		t.Errorf("rss per replica %v, want (after - before)/15 = %v", got.RSSPerReplicaMiB, want)
	}
	if want := round3((got.HeapAfterMiB - got.HeapBeforeMiB) / 15); got.HeapPerReplicaMiB < want-0.01 || got.HeapPerReplicaMiB > want+0.01 {
		t.Errorf("heap per replica %v, want (after - before)/15 = %v", got.HeapPerReplicaMiB, want)
	}
	if got.HeapAfterMiB <= got.HeapBeforeMiB {
		t.Errorf("heap before %v, after %v MiB: the host and its groups must show", got.HeapBeforeMiB, got.HeapAfterMiB)
	}
	if got.Goroutines <= 0 {
		t.Errorf("goroutines = %d", got.Goroutines)
	}
	if got.IdleS < 0.2 || got.IdleCores < 0 || got.SettleS != 0.1 {
		t.Errorf("settle %v s, idle %v s, %v cores: want 0.1 s, then a window of at least 0.2 s", got.SettleS, got.IdleS, got.IdleCores)
	}
	if !got.Write || got.WritesOK != 5 || got.WriteErrors != 0 || got.FirstError != "" {
		t.Errorf("writes ok %d, errors %d (%s): want 5 and none", got.WritesOK, got.WriteErrors, got.FirstError)
	}

	// Both throughput runs wrote to the groups they were meant to, without errors.
	if got.ThroughputS != 0.3 || got.ThroughputWriters != 8 || got.HotGroups != 2 || got.All == nil || got.Hot == nil {
		t.Fatalf("throughput not reported as configured: %s", out.String())
	}
	for _, r := range []*GroupsWriteRate{got.All, got.Hot} {
		if r.Puts <= 0 || r.Errors != 0 || r.PutsPerS <= 0 || r.FirstError != "" {
			t.Errorf("throughput run over %d groups: %+v", r.Groups, *r)
		}
	}
	if got.All.Groups != 5 || got.Hot.Groups != 2 || got.HotOverAll != ratio(got.Hot.PutsPerS, got.All.PutsPerS) {
		t.Errorf("all %d groups, hot %d groups, ratio %v", got.All.Groups, got.Hot.Groups, got.HotOverAll)
	}

	if want := "start elect settle idle write all hot finished"; strings.Join(phases, " ") != want {
		t.Errorf("progress phases %q, want %q", phases, want)
	}
	var table bytes.Buffer
	if err := WriteGroupsTable(&table, r); err != nil || !strings.Contains(table.String(), "5/5") ||
		!strings.Contains(table.String(), "2 groups ÷ all") {
		t.Errorf("table (err %v):\n%s", err, table.String())
	}
	// The Host and the engine are closed, the temporary directory is removed.
	if entries, err := os.ReadDir(tmp); err != nil || len(entries) != 0 {
		t.Errorf("TMPDIR holds %v (err %v): the temporary directory was not removed", entries, err)
	}
	if err := goleak.Find(leaks); err != nil {
		t.Errorf("goroutine leak: %v", err)
	}
}

func TestRunGroupsKeepsGivenDir(t *testing.T) {
	parent := t.TempDir()
	cfg := GroupsConfig{Count: 1, Dir: parent} // no idle window, no throughput runs
	if _, err := RunGroups(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(parent + "/groups"); err != nil || len(entries) == 0 {
		t.Errorf("%s/groups holds %v (err %v): want the data kept", parent, entries, err)
	}
	// dragonboat froze the last run's Raft address there: a second run must refuse the directory.
	if _, err := RunGroups(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "already holds data") {
		t.Errorf("second run in the same directory: err = %v", err)
	}
}

func TestGroupsConfigValidate(t *testing.T) {
	err := GroupsConfig{Count: 0, Idle: -time.Second, Settle: -time.Second, Throughput: -time.Second,
		Writers: -1, HotGroups: -1}.Validate()
	for _, want := range []string{"count must be between 1 and 999999, got 0", "idle must not be negative",
		"settle must not be negative", "throughput must not be negative", "writers must not be negative",
		"hot groups must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
	if err := DefaultGroupsConfig().Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tkvbench\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n"
	if n, err := parseVmRSS(strings.NewReader(status)); err != nil || n != 12345<<10 {
		t.Errorf("parseVmRSS = %d, %v; want %d", n, err, 12345<<10)
	}
	if _, err := parseVmRSS(strings.NewReader("Name:\tx\n")); err == nil {
		t.Error("no VmRSS line: want an error")
	}
	if n, err := processRSS(); err != nil || n <= 0 {
		t.Errorf("processRSS() = %d, %v", n, err)
	}
}

func TestGroupSpans(t *testing.T) {
	for i := range 3 {
		s := groupSpan(i)
		if !s.Valid() || !s.Contains(groupKey(i)) || s.Contains(groupKey(i+1)) {
			t.Errorf("group %d: span [%s, %s) must hold its key and not the next group's", i, s.Start, s.End)
		}
	}
	if string(groupKey(42)) != "g000042" || groupRange(0) != 3 {
		t.Errorf("key %s, range %d", groupKey(42), groupRange(0))
	}
}
