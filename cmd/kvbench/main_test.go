package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/bondkv/bondkv/bench"
)

// kvbench runs the command in-process with TMPDIR set to a fresh directory, and checks that
// every run leaves that directory empty (the engine's temporary directory was removed).
func kvbench(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	if entries, err := os.ReadDir(tmp); err != nil || len(entries) != 0 {
		t.Errorf("kvbench %s left %v in TMPDIR (err %v)", strings.Join(args, " "), entries, err)
	}
	return code, out.String(), errb.String()
}

// lastLine is the last line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestPutJSON(t *testing.T) {
	for _, tc := range []struct {
		engine string
		nodes  int
	}{
		{bench.EnginePebble, 1},
		{bench.EngineRaftSingle, 3},
		{bench.EngineBondKV, 3},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			code, stdout, stderr := kvbench(t, "put", "--engine", tc.engine, "--nodes", "3",
				"--duration", "300ms", "--warmup", "100ms", "--concurrency", "4", "--json")
			if code != exitOK {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if stderr != "" {
				t.Errorf("stderr not empty (no terminal, no --verbose):\n%s", stderr)
			}
			// The last line is one JSON object with the documented fields.
			line := lastLine(stdout)
			var fields map[string]any
			if err := json.Unmarshal([]byte(line), &fields); err != nil {
				t.Fatalf("last line of stdout is not a JSON object: %v\n%s", err, stdout)
			}
			for _, k := range []string{"bench", "engine", "nodes", "concurrency", "value_size", "duration_s",
				"ops", "ops_per_sec", "p50_us", "p90_us", "p99_us", "max_us", "errors"} {
				if _, ok := fields[k]; !ok {
					t.Errorf("JSON lacks %q: %s", k, line)
				}
			}
			var r bench.Result
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			if r.Bench != "put" || r.Engine != tc.engine || r.Nodes != tc.nodes || r.Concurrency != 4 ||
				r.ValueSize != 100 || r.DurationS != 0.3 {
				t.Errorf("result does not echo the workload: %s", line)
			}
			if r.Ops <= 0 || r.Errors != 0 || r.OpsPerSec <= 0 {
				t.Errorf("ops %d, errors %d (%s), ops/s %v: want ops and no errors", r.Ops, r.Errors, r.FirstError, r.OpsPerSec)
			}
			if !(0 < r.P50Us && r.P50Us <= r.P90Us && r.P90Us <= r.P99Us && r.P99Us <= r.MaxUs) {
				t.Errorf("latencies not ordered: p50 %v p90 %v p99 %v max %v", r.P50Us, r.P90Us, r.P99Us, r.MaxUs)
			}
			// The table comes first, on stdout too.
			if !strings.HasPrefix(strings.TrimSpace(stdout), "engine") {
				t.Errorf("stdout does not start with the table:\n%s", stdout)
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"put", "--engine", "rocksdb"}, `unknown engine "rocksdb"`},
		{[]string{"put", "--concurrency", "0"}, "concurrency must be at least 1, got 0"},
		{[]string{"put", "--value-size", "-1"}, "value size must be between 0 and 1048576 bytes, got -1"},
		{[]string{"put", "--duration", "soon"}, `invalid argument "soon" for "--duration"`},
		{[]string{"put", "--engine", "pebble", "--compare"}, "--engine and --compare exclude each other"},
		{[]string{"put", "extra"}, `unknown command "extra"`},
		{[]string{"--concurrency", "0"}, "concurrency must be at least 1"},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
	} {
		code, stdout, stderr := kvbench(t, tc.args...)
		if code != exitUsage {
			t.Errorf("kvbench %v: exit %d, want %d", tc.args, code, exitUsage)
		}
		if !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "--help' for usage") {
			t.Errorf("kvbench %v: stderr %q, want %q and a usage hint", tc.args, stderr, tc.want)
		}
		if stdout != "" {
			t.Errorf("kvbench %v: stdout %q, want nothing", tc.args, stdout)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"put", "--help"}} {
		code, stdout, _ := kvbench(t, args...)
		if code != exitOK || !strings.Contains(stdout, "--compare") {
			t.Errorf("kvbench %v: exit %d, help:\n%s", args, code, stdout)
		}
	}
}

func TestCompareJSON(t *testing.T) {
	code, stdout, stderr := kvbench(t, "--duration", "300ms", "--warmup", "100ms", "--concurrency", "4", "--json")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var c bench.Comparison
	if err := json.Unmarshal([]byte(lastLine(stdout)), &c); err != nil {
		t.Fatalf("last line of stdout is not a JSON object: %v\n%s", err, stdout)
	}
	if !c.Compare || c.Baseline != bench.EnginePebble || len(c.Results) != 3 {
		t.Fatalf("comparison = %s", lastLine(stdout))
	}
	for i, name := range bench.EngineNames() {
		r := c.Results[i]
		if r.Engine != name || r.Error != "" || r.Ops <= 0 || r.DurationS != 0.3 {
			t.Errorf("result %d = %+v, want %s measured for 0.3 s", i, r, name)
		}
		if q, ok := c.Ratios[name]; !ok || q.OpsPerSec <= 0 {
			t.Errorf("ratios of %s = %+v, %v", name, q, ok)
		}
	}
	if q := c.Ratios[bench.EnginePebble]; q != (bench.Ratios{OpsPerSec: 1, P50: 1, P99: 1}) {
		t.Errorf("pebble's ratios to itself = %+v", q)
	}
	if !strings.Contains(stdout, "ops/s ÷ pebble") {
		t.Errorf("no comparison table:\n%s", stdout)
	}
}
