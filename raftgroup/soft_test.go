package raftgroup

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/store"
)

// dragonboatVersion is the dragonboat version soft.go was checked against.
const dragonboatVersion = "v4.0.0-20250723143628-076c7f6497dc"

// TestSoftSettingsDragonboatVersion fails when dragonboat changes version: soft.go writes
// unexported dragonboat variables through go:linkname, assuming their names, their type
// (uint64) and that replicas read them when they start. Re-check those in node.go, nodehost.go
// and request.go of the new version, then update dragonboatVersion.
func TestSoftSettingsDragonboatVersion(t *testing.T) {
	// Test binaries carry no dependency versions (debug.ReadBuildInfo): read the module's go.mod.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := "github.com/lni/dragonboat/v4 " + dragonboatVersion
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/lni/dragonboat/v4" {
			if strings.Join(f[:2], " ") != want {
				t.Fatalf("go.mod requires %s %s, soft.go was checked against %s: re-check the linked variables", f[0], f[1], dragonboatVersion)
			}
			return
		}
	}
	t.Fatal("go.mod does not require github.com/lni/dragonboat/v4")
}

// TestSoftSettingsApplied reads the linked variables back: raftgroup's init set them.
func TestSoftSettingsApplied(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"receiveQueueLen", receiveQueueLen, ReceiveQueueLength},
		{"incomingProposalsMaxLen", incomingProposalsMaxLen, IncomingProposalQueueLength},
		{"incomingReadIndexMaxLen", incomingReadIndexMaxLen, IncomingReadIndexQueueLength},
		{"pendingProposalShards", pendingProposalShards, PendingProposalShards},
	} {
		if c.got != c.want {
			t.Errorf("dragonboat's %s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

// TestSoftSettingsKeepFileValues checks that a value a dragonboat-soft-settings.json changed
// (anything but dragonboat's default) is left alone.
func TestSoftSettingsKeepFileValues(t *testing.T) {
	saved := receiveQueueLen
	defer func() { receiveQueueLen = saved }()
	receiveQueueLen = 512
	applySoftSettings()
	if receiveQueueLen != 512 {
		t.Errorf("receiveQueueLen = %d after applySoftSettings, want the file's 512 kept", receiveQueueLen)
	}
	receiveQueueLen = dragonboatReceiveQueueLength
	applySoftSettings()
	if receiveQueueLen != ReceiveQueueLength {
		t.Errorf("receiveQueueLen = %d, want %d", receiveQueueLen, ReceiveQueueLength)
	}
}

// TestReplicaHeapCost guards that dragonboat still sizes a replica's queues from the linked
// variables when it starts it: with its defaults a replica holds about 1.2 MiB of heap, with
// raftgroup's about 0.2 MiB.
func TestReplicaHeapCost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 100 replicas")
	}
	h := newHarness(t)
	n := h.add(1)
	n.start(t)
	const count = 100
	members := h.members(1)
	heap := func() float64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc)
	}
	before := heap()
	for i := range count {
		span := base.Span{Start: fmt.Appendf(nil, "k%04d", i), End: fmt.Appendf(nil, "k%04d", i+1)}
		id := testRange + base.RangeID(i)
		if err := n.engine.InitRange(id, store.RangeState{Span: span}); err != nil {
			t.Fatal(err)
		}
		if err := n.host.StartReplica(Replica{Range: id, Members: members}); err != nil {
			t.Fatal(err)
		}
	}
	perReplica := (heap() - before) / count / (1 << 20)
	t.Logf("heap per replica: %.3f MiB", perReplica)
	if perReplica > 0.5 {
		t.Errorf("heap per replica %.3f MiB, want at most 0.5: are dragonboat's queues still sized from the variables soft.go sets?", perReplica)
	}
	// The replicas work with the short queues.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range count {
		id := testRange + base.RangeID(i)
		res, err := n.host.Propose(ctx, id, []store.Command{{Op: store.OpPut, Key: fmt.Appendf(nil, "k%04d", i), Value: []byte("v")}})
		if err != nil || res.Code != store.ResultApplied {
			t.Fatalf("range %d: put: %v %v", id, res.Code, err)
		}
	}
}
