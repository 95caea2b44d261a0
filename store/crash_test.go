package store

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCrashRecovery applies batches on a crashable in-memory filesystem, syncing after some,
// and takes crash clones (a simulated power loss keeping a random part of the unsynced data) at
// random points. Each clone must reopen to a state that is exactly the state after some batch:
// the recovered applied index names that batch, every entry up to it is present and nothing
// beyond it, and the applied index is at least that of the last Sync before the crash.
func TestCrashRecovery(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runCrash(t, seed) })
	}
}

func runCrash(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0xc4a5))
	fs := vfs.NewCrashableMem()
	// A small memtable makes flushes (and WAL rotations) happen between and during batches.
	opts := &Options{FS: fs, MemTableSize: 64 << 10, CacheSize: 1 << 20}
	e, err := Open("/db", opts)
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	defer e.Close()
	const id = 3
	mustInit(t, e, id, base.FullSpan)

	m := model{}
	states := map[uint64]model{0: {}} // applied index -> state right after that batch
	var next, applied, synced uint64
	const batches, crashes = 60, 3
	crashAt := map[int]bool{}
	for len(crashAt) < crashes {
		crashAt[rng.IntN(batches)] = true
	}
	for b := 0; b < batches; b++ {
		entries := randomBatch(rng, &next)
		// Bulk up the values so the small memtable fills.
		for i := range entries {
			cmds, _ := DecodeCommands(entries[i].Data)
			for j := range cmds {
				if cmds[j].Op == OpPut {
					cmds[j].Value = fmt.Appendf(cmds[j].Value, "%0*d", rng.IntN(2000), 0)
				}
			}
			entries[i].Data = EncodeCommands(nil, cmds)
		}
		mustApply(t, e, id, entries...)
		for _, ent := range entries {
			cmds, _ := DecodeCommands(ent.Data)
			m.apply(ent.Index, cmds)
		}
		applied = next
		states[applied] = maps.Clone(m)
		if rng.IntN(3) == 0 {
			if err := e.Sync(); err != nil {
				t.Fatalf("seed %d: sync: %v", seed, err)
			}
			synced = applied
		}
		if crashAt[b] {
			pct := []int{0, 30, 70, 100}[rng.IntN(4)]
			clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(seed, uint64(b)))})
			checkCrashClone(t, clone, seed, b, pct, synced, applied, states)
		}
	}
}

func checkCrashClone(t *testing.T, fs vfs.FS, seed uint64, batch, pct int, synced, applied uint64, states map[uint64]model) {
	t.Helper()
	where := fmt.Sprintf("seed %d, crash after batch %d (%d%% of unsynced data kept)", seed, batch, pct)
	e, err := Open("/db", &Options{FS: fs, MemTableSize: 64 << 10, CacheSize: 1 << 20})
	if err != nil {
		t.Fatalf("%s: reopen: %v", where, err)
	}
	defer e.Close()
	got, err := e.AppliedIndex(3)
	if err != nil {
		t.Fatalf("%s: applied index: %v", where, err)
	}
	if got < synced || got > applied {
		t.Fatalf("%s: recovered applied index %d outside [last synced %d, last applied %d]", where, got, synced, applied)
	}
	want, ok := states[got]
	if !ok {
		t.Fatalf("%s: recovered applied index %d is not a batch boundary", where, got)
	}
	if d := diffRecords(records(t, e), want); d != "" {
		t.Fatalf("%s: data disagrees with applied index %d:\n%s", where, got, d)
	}
}
