package store

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// openMem opens an engine on a fresh in-memory filesystem and closes it at cleanup.
func openMem(t testing.TB) *Engine {
	t.Helper()
	e, err := Open("/db", &Options{FS: vfs.NewMem(), CacheSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

// mustInit gives range id a state with span (generation 0, version base 0) if it has none.
func mustInit(t testing.TB, e *Engine, id base.RangeID, span base.Span) {
	t.Helper()
	if err := e.InitRange(id, RangeState{Span: span}); err != nil {
		t.Fatalf("init range %d: %v", id, err)
	}
}

func put(k, v string) Command { return Command{Op: OpPut, Key: []byte(k), Value: []byte(v)} }
func del(k string) Command    { return Command{Op: OpDelete, Key: []byte(k)} }

func entry(idx uint64, cmds ...Command) Entry {
	return Entry{Index: idx, Data: EncodeCommands(nil, cmds)}
}

func mustApply(t testing.TB, e *Engine, id base.RangeID, entries ...Entry) []Result {
	t.Helper()
	res, err := e.Apply(id, entries)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

func mustChecksum(t testing.TB, e *Engine, id base.RangeID) (uint64, [32]byte) {
	t.Helper()
	applied, sum, err := e.Checksum(id)
	if err != nil {
		t.Fatalf("checksum: %v", err)
	}
	return applied, sum
}

// dump returns every key-value pair of the engine (all prefixes), for exact comparisons.
func dump(t testing.TB, e *Engine) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := iterate(e.DB(), nil, nil, func(k, v []byte) (bool, error) {
		out[string(k)] = string(v)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// records returns every value record of the engine, tombstones included, by user key.
func records(t testing.TB, e *Engine) map[string]Record {
	t.Helper()
	out := map[string]Record{}
	start, end := base.DataSpan(base.FullSpan)
	err := iterate(e.DB(), start, end, func(k, v []byte) (bool, error) {
		r, err := decodeRecord(v)
		if err != nil {
			return false, err
		}
		r.Data = bytes.Clone(r.Data)
		out[string(k[2:])] = r
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffRecords describes the differences between two record maps ("" if equal).
func diffRecords(got, want map[string]Record) string {
	var b bytes.Buffer
	keys := slices.Sorted(maps.Keys(want))
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			fmt.Fprintf(&b, "%q missing, want %+v\n", k, w)
		case !wok:
			fmt.Fprintf(&b, "%q unexpected: %+v\n", k, g)
		case g.Version != w.Version || g.Deleted != w.Deleted || !bytes.Equal(g.Data, w.Data):
			fmt.Fprintf(&b, "%q = {v%d del=%v %q}, want {v%d del=%v %q}\n", k, g.Version, g.Deleted, g.Data, w.Version, w.Deleted, w.Data)
		}
	}
	return b.String()
}

// testMembers are the members split commands in tests carry.
var testMembers = map[base.NodeID]string{1: "127.0.0.1:1", 2: "127.0.0.1:2"}
