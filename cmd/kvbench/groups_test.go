package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bondkv/bondkv/bench"
)

func TestGroupsJSON(t *testing.T) {
	code, stdout, stderr := kvbench(t, "groups", "--count", "5", "--idle", "200ms", "--write", "--json")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr not empty (no terminal, no --verbose):\n%s", stderr)
	}
	var r bench.GroupsResult
	if err := json.Unmarshal([]byte(lastLine(stdout)), &r); err != nil {
		t.Fatalf("last line of stdout is not a JSON object: %v\n%s", err, stdout)
	}
	if r.Bench != "groups" || r.Groups != 5 || r.IdleS < 0.2 || r.WritesOK != 5 || r.Goroutines <= 0 ||
		r.RSSAfterMiB < r.RSSBeforeMiB {
		t.Errorf("result = %s", lastLine(stdout))
	}
	if !strings.HasPrefix(strings.TrimSpace(stdout), "groups") {
		t.Errorf("stdout does not start with the table:\n%s", stdout)
	}
}

func TestGroupsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"groups", "--count", "0"}, "count must be between 1 and 999999, got 0"},
		{[]string{"groups", "--idle", "-1s"}, "idle must not be negative, got -1s"},
		{[]string{"groups", "--count", "many"}, `invalid argument "many" for "--count"`},
	} {
		code, stdout, stderr := kvbench(t, tc.args...)
		if code != exitUsage || stdout != "" {
			t.Errorf("kvbench %v: exit %d, stdout %q; want %d and nothing", tc.args, code, stdout, exitUsage)
		}
		if !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "--help' for usage") {
			t.Errorf("kvbench %v: stderr %q, want %q and a usage hint", tc.args, stderr, tc.want)
		}
	}
}
