package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
)

// model is the plain-map reference: user key -> record (tombstones included).
type model map[string]Record

func (m model) apply(index uint64, cmds []Command) {
	for _, c := range cmds {
		if c.Op == OpDelete {
			m[string(c.Key)] = Record{Version: index, Deleted: true}
		} else {
			m[string(c.Key)] = Record{Version: index, Data: bytes.Clone(c.Value)}
		}
	}
}

// scan is Scan on the model.
func (m model) scan(span base.Span, limit int) []KV {
	var out []KV
	for _, k := range slices.Sorted(maps.Keys(m)) {
		r := m[k]
		if r.Deleted || !span.Contains([]byte(k)) {
			continue
		}
		out = append(out, KV{Key: []byte(k), Value: Value{Version: r.Version, Data: r.Data}})
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}

// randomKey draws from a small keyspace so that keys are overwritten and deleted often; some
// keys share prefixes and include 0x00 and 0xff bytes to exercise span edges.
func randomKey(rng *rand.Rand) []byte {
	k := []byte{"abcxyz"[rng.IntN(6)]}
	for n := rng.IntN(3); n > 0; n-- {
		k = append(k, []byte{0x00, 'a', 'm', 0xff}[rng.IntN(4)])
	}
	return k
}

func randomBatch(rng *rand.Rand, next *uint64) []Entry {
	entries := make([]Entry, 1+rng.IntN(4))
	for i := range entries {
		cmds := make([]Command, 1+rng.IntN(6))
		for j := range cmds {
			if rng.IntN(4) == 0 {
				cmds[j] = Command{Op: OpDelete, Key: randomKey(rng)}
			} else {
				cmds[j] = Command{Op: OpPut, Key: randomKey(rng), Value: fmt.Appendf(nil, "v%d-%d", rng.Uint32(), rng.IntN(100))}
			}
		}
		*next += 1 + uint64(rng.IntN(2)) // indices may skip (entries of other kinds)
		entries[i] = entry(*next, cmds...)
	}
	return entries
}

func randomSpan(rng *rand.Rand) base.Span {
	for {
		s := base.Span{Start: randomKey(rng)}
		switch rng.IntN(4) {
		case 0:
			s.Start = nil
		case 1:
			s.End = nil
		default:
			s.End = randomKey(rng)
		}
		if s.Valid() {
			return s
		}
	}
}

func TestModel(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runModel(t, seed) })
	}
}

func runModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	e := openMem(t)
	const id = 3
	mustInit(t, e, id, base.FullSpan)
	m := model{}
	var next uint64
	for step := 0; step < 150; step++ {
		entries := randomBatch(rng, &next)
		mustApply(t, e, id, entries...)
		for _, ent := range entries {
			cmds, _ := DecodeCommands(ent.Data)
			m.apply(ent.Index, cmds)
		}
		for range 3 {
			k := randomKey(rng)
			v, err := e.Get(k)
			want, ok := m[string(k)]
			switch {
			case !ok || want.Deleted:
				if !errors.Is(err, base.ErrNotFound) {
					t.Fatalf("seed %d step %d: Get(%q) = %+v, %v; want not found", seed, step, k, v, err)
				}
			case err != nil || v.Version != want.Version || !bytes.Equal(v.Data, want.Data):
				t.Fatalf("seed %d step %d: Get(%q) = %+v, %v; want %+v", seed, step, k, v, err, want)
			}
		}
		span, limit := randomSpan(rng), rng.IntN(6)-1
		got, err := e.Scan(span, limit)
		if err != nil {
			t.Fatalf("seed %d step %d: scan: %v", seed, step, err)
		}
		if want := m.scan(span, limit); !equalKVs(got, want) {
			t.Fatalf("seed %d step %d: Scan([%q, %q), %d) =\n%s\nwant\n%s", seed, step, span.Start, span.End, limit, fmtKVs(got), fmtKVs(want))
		}
	}
	if d := diffRecords(records(t, e), m); d != "" {
		t.Fatalf("seed %d: final state differs from the model:\n%s", seed, d)
	}
}

func equalKVs(a, b []KV) bool {
	return slices.EqualFunc(a, b, func(x, y KV) bool {
		return bytes.Equal(x.Key, y.Key) && x.Value.Version == y.Value.Version && bytes.Equal(x.Value.Data, y.Value.Data)
	})
}

func fmtKVs(kvs []KV) string {
	var b bytes.Buffer
	for _, kv := range kvs {
		fmt.Fprintf(&b, "  %q@%d=%q\n", kv.Key, kv.Value.Version, kv.Value.Data)
	}
	return b.String()
}

func TestScanInvalidSpan(t *testing.T) {
	e := openMem(t)
	for _, s := range []base.Span{{Start: []byte("b"), End: []byte("a")}, {Start: []byte("a"), End: []byte("a")}, {End: []byte{}}} {
		if _, err := e.Scan(s, 0); !errors.Is(err, base.ErrInvalidRange) {
			t.Errorf("Scan([%q, %q)): %v", s.Start, s.End, err)
		}
	}
	// Scan returns owned copies.
	mustInit(t, e, 3, base.FullSpan)
	mustApply(t, e, 3, entry(1, put("a", "1"), put("b", "2")))
	kvs, err := e.Scan(base.FullSpan, 0)
	if err != nil || len(kvs) != 2 {
		t.Fatalf("scan: %v, %v", kvs, err)
	}
	kvs[0].Key = append(kvs[0].Key, 'x') // must not clobber the value sharing its buffer
	if string(kvs[0].Value.Data) != "1" {
		t.Fatalf("key append clobbered the value: %q", kvs[0].Value.Data)
	}
}

// rangeModel is the model of one range's state and applied index.
type rangeModel struct {
	st      RangeState
	applied uint64
}

// TestRangeModel runs random writes, splits, freezes and merges (the full protocol: freeze the
// right range, merge it into the left with its state and version, maybe destroy it) against
// the engine and against a model of the ranges' spans and the records. Besides matching the
// model's results, states and records it checks the invariants the versions exist for: a key's
// version only ever grows, whichever range writes it, and the spans partition the keyspace.
func TestRangeModel(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runRangeModel(t, seed) })
	}
}

func runRangeModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5917))
	e := openMem(t)
	ranges := map[base.RangeID]*rangeModel{3: {st: RangeState{Span: base.FullSpan}}}
	mustInit(t, e, 3, base.FullSpan)
	recs := model{}
	nextID := base.RangeID(4)
	var splits, merges int
	fail := func(step int, format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d step %d: %s", seed, step, fmt.Sprintf(format, args...))
	}
	pick := func() base.RangeID {
		ids := slices.Sorted(maps.Keys(ranges))
		return ids[rng.IntN(len(ids))]
	}
	// apply applies one entry of cmds to range id, checks the code against want and returns the
	// entry's index and result.
	apply := func(step int, id base.RangeID, want ResultCode, cmds ...Command) (uint64, Result) {
		t.Helper()
		r := ranges[id]
		r.applied += 1 + uint64(rng.IntN(2))
		res := mustApply(t, e, id, entry(r.applied, cmds...))[0]
		if res.Code != want {
			fail(step, "range %d (%v) entry %d %v: %v (%v), want %v", id, r.st, r.applied, cmds, res.Code, res.Err, want)
		}
		return r.applied, res
	}
	for step := 0; step < 300; step++ {
		id := pick()
		r := ranges[id]
		switch p := rng.IntN(100); {
		case p < 55: // writes, some outside the span
			cmds := make([]Command, 1+rng.IntN(4))
			want := ResultApplied
			for j := range cmds {
				k := randomKey(rng)
				if rng.IntN(3) == 0 {
					cmds[j] = Command{Op: OpDelete, Key: k}
				} else {
					cmds[j] = Command{Op: OpPut, Key: k, Value: fmt.Appendf(nil, "v%d", rng.IntN(1000))}
				}
				if !r.st.Span.Contains(k) {
					want = ResultOutOfSpan
				}
			}
			if want == ResultApplied && r.st.Frozen {
				want = ResultFrozen
			}
			index, _ := apply(step, id, want, cmds...)
			if want != ResultApplied {
				break
			}
			v := r.st.VersionBase + index
			for _, c := range cmds {
				if old, ok := recs[string(c.Key)]; ok && old.Version >= v {
					fail(step, "key %q rewritten at version %d after version %d", c.Key, v, old.Version)
				}
			}
			recs.apply(v, cmds)
		case p < 70: // split
			key := randomKey(rng)
			sp := r.st.Span
			want := ResultRejected
			inside := bytes.Compare(sp.Start, key) < 0 && (sp.End == nil || bytes.Compare(key, sp.End) < 0)
			switch {
			case r.st.Frozen:
				want = ResultFrozen
			case inside:
				want = ResultApplied
			}
			newID := nextID
			index, res := apply(step, id, want, SplitCommand(key, newID, testMembers))
			if want != ResultApplied {
				break
			}
			nextID++
			splits++
			k := bytes.Clone(key)
			r.st = RangeState{Span: base.Span{Start: sp.Start, End: k}, Generation: r.st.Generation + 1, VersionBase: r.st.VersionBase}
			ranges[newID] = &rangeModel{st: RangeState{Span: base.Span{Start: k, End: sp.End}, Generation: r.st.Generation, VersionBase: r.st.VersionBase + index}}
			if !res.Split.LeftState.Equal(r.st) || !res.Split.RightState.Equal(ranges[newID].st) {
				fail(step, "split result %+v", res.Split)
			}
		case p < 80: // freeze or unfreeze
			if rng.IntN(2) == 0 {
				apply(step, id, ResultApplied, FreezeCommand())
				r.st.Frozen = true
			} else {
				apply(step, id, ResultApplied, UnfreezeCommand())
				r.st.Frozen = false
			}
		default: // merge id with its right neighbour
			if r.st.Span.End == nil {
				break
			}
			var rid base.RangeID
			for oid, o := range ranges {
				if bytes.Equal(o.st.Span.Start, r.st.Span.End) {
					rid = oid
				}
			}
			right := ranges[rid]
			apply(step, rid, ResultApplied, FreezeCommand())
			right.st.Frozen = true
			rst := mustState(t, e, rid)
			rv, err := e.RangeVersion(rid)
			if err != nil || !rst.Equal(right.st) || rv != right.st.VersionBase+right.applied {
				fail(step, "right range %d: state %v version %d (%v), model %v applied %d", rid, rst, rv, err, right.st, right.applied)
			}
			want := ResultApplied
			if r.st.Frozen {
				want = ResultFrozen
			}
			index, _ := apply(step, id, want, MergeCommand(MergeArgs{Right: rid, RightSpan: rst.Span, RightGeneration: rst.Generation, RightVersion: rv}))
			if want != ResultApplied {
				break
			}
			vb := r.st.VersionBase
			if rv > index {
				vb = max(vb, rv-index)
			}
			r.st = RangeState{Span: base.Span{Start: r.st.Span.Start, End: rst.Span.End}, Generation: max(r.st.Generation, rst.Generation) + 1, VersionBase: vb}
			delete(ranges, rid)
			merges++
			if rng.IntN(2) == 0 {
				if err := e.DestroyRange(rid); err != nil {
					t.Fatal(err)
				}
			}
		}
		checkRanges(t, e, seed, step, ranges)
	}
	if d := diffRecords(records(t, e), recs); d != "" {
		t.Fatalf("seed %d: final records differ from the model:\n%s", seed, d)
	}
	if splits < 3 || merges < 3 {
		t.Fatalf("seed %d: only %d splits and %d merges applied", seed, splits, merges)
	}
}

// checkRanges compares the engine's ranges and states with the model and checks that the spans
// partition the keyspace.
func checkRanges(t *testing.T, e *Engine, seed uint64, step int, ranges map[base.RangeID]*rangeModel) {
	t.Helper()
	ids := slices.Sorted(maps.Keys(ranges))
	if got := mustRanges(t, e); !slices.Equal(got, ids) {
		t.Fatalf("seed %d step %d: Ranges = %v, model %v", seed, step, got, ids)
	}
	var spans []base.Span
	for _, id := range ids {
		st := mustState(t, e, id)
		if !st.Equal(ranges[id].st) {
			t.Fatalf("seed %d step %d: range %d state %v, model %v", seed, step, id, st, ranges[id].st)
		}
		if a, _ := e.AppliedIndex(id); a != ranges[id].applied {
			t.Fatalf("seed %d step %d: range %d applied %d, model %d", seed, step, id, a, ranges[id].applied)
		}
		spans = append(spans, st.Span)
	}
	slices.SortFunc(spans, func(a, b base.Span) int { return bytes.Compare(a.Start, b.Start) })
	if len(spans[0].Start) != 0 || spans[len(spans)-1].End != nil {
		t.Fatalf("seed %d step %d: spans %v do not cover the keyspace", seed, step, spans)
	}
	for i := 1; i < len(spans); i++ {
		if !bytes.Equal(spans[i-1].End, spans[i].Start) || spans[i-1].End == nil {
			t.Fatalf("seed %d step %d: spans %v are not contiguous", seed, step, spans)
		}
	}
}
