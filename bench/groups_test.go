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
	cfg := GroupsConfig{Count: 5, Idle: 200 * time.Millisecond, Write: true}
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
	for _, k := range []string{"bench", "groups", "create_s", "rss_before_mib", "rss_after_mib",
		"rss_per_group_mib", "goroutines", "idle_cores", "writes_ok"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out.String())
		}
	}
	var got GroupsResult
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Bench != "groups" || got.Groups != 5 || got.RTTMs != 50 || got.ElectionRTT != 20 {
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
	if got.HeapAfterMiB <= got.HeapBeforeMiB {
		t.Errorf("heap before %v, after %v MiB: the host and its groups must show", got.HeapBeforeMiB, got.HeapAfterMiB)
	}
	if got.Goroutines <= 0 {
		t.Errorf("goroutines = %d", got.Goroutines)
	}
	if got.IdleS < 0.2 || got.IdleCores < 0 {
		t.Errorf("idle %v s, %v cores: want a window of at least 0.2 s", got.IdleS, got.IdleCores)
	}
	if !got.Write || got.WritesOK != 5 || got.WriteErrors != 0 || got.FirstError != "" {
		t.Errorf("writes ok %d, errors %d (%s): want 5 and none", got.WritesOK, got.WriteErrors, got.FirstError)
	}

	if want := "start elect idle write finished"; strings.Join(phases, " ") != want {
		t.Errorf("progress phases %q, want %q", phases, want)
	}
	var table bytes.Buffer
	if err := WriteGroupsTable(&table, r); err != nil || !strings.Contains(table.String(), "5/5") {
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
	cfg := GroupsConfig{Count: 1, Dir: parent}
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
	err := GroupsConfig{Count: 0, Idle: -time.Second}.Validate()
	if err == nil || !strings.Contains(err.Error(), "count must be between 1 and 999999, got 0") ||
		!strings.Contains(err.Error(), "idle must not be negative") {
		t.Errorf("Validate() = %v, want both problems", err)
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
