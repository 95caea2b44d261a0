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
	"github.com/cockroachdb/pebble/v2/vfs"
)

func sp(start, end string) base.Span { return base.Span{Start: []byte(start), End: []byte(end)} }
func from(start string) base.Span    { return base.Span{Start: []byte(start)} }

func mustState(t testing.TB, e *Engine, id base.RangeID) RangeState {
	t.Helper()
	st, ok, err := e.RangeState(id)
	if err != nil || !ok {
		t.Fatalf("range %d state: %v, %v", id, ok, err)
	}
	return st
}

func mustRanges(t testing.TB, e *Engine) []base.RangeID {
	t.Helper()
	ids, err := e.Ranges()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func wantCodes(t testing.TB, res []Result, want ...ResultCode) {
	t.Helper()
	for i, r := range res {
		if r.Code != want[i] {
			t.Fatalf("result %d = %v (%v), want %v", i, r.Code, r.Err, want[i])
		}
	}
}

func TestInitRangeRangesDestroy(t *testing.T) {
	fs := vfs.NewMem()
	e, err := Open("/db", &Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if st, ok, err := e.RangeState(3); err != nil || ok || !st.Span.Equal(base.NoSpan) {
		t.Fatalf("fresh range state: %v, %v, %v", st, ok, err)
	}
	big := base.RangeID(1<<40 + 7)
	for id, s := range map[base.RangeID]base.Span{1: base.NoSpan, 3: from("a"), 256: sp("a", "b"), big: base.FullSpan} {
		mustInit(t, e, id, s)
	}
	// Idempotent: a second InitRange leaves the state alone.
	if err := e.InitRange(3, RangeState{Span: sp("x", "y"), Generation: 9}); err != nil {
		t.Fatal(err)
	}
	if st := mustState(t, e, 3); !st.Equal(RangeState{Span: from("a")}) {
		t.Fatalf("state after second init: %v", st)
	}
	for _, bad := range []base.Span{sp("b", "a"), sp("a", "a"), {Start: []byte("a"), End: []byte{}}} {
		if err := e.InitRange(5, RangeState{Span: bad}); !errors.Is(err, base.ErrInvalidRange) {
			t.Errorf("InitRange(%s): %v", bad, err)
		}
	}
	if err := e.InitRange(0, RangeState{Span: base.FullSpan}); !errors.Is(err, base.ErrInvalidRange) {
		t.Errorf("InitRange(0): %v", err)
	}
	// Range-local keys of other kinds (applied index, records) do not make a range.
	mustApply(t, e, 7, entry(1, Command{Op: OpPutLocal, Key: []byte("k"), Value: []byte("v")}))
	want := []base.RangeID{1, 3, 256, big}
	if got := mustRanges(t, e); !slices.Equal(got, want) {
		t.Fatalf("Ranges = %v, want %v", got, want)
	}
	mustApply(t, e, 3, entry(4, put("b", "1"), Command{Op: OpPutLocal, Key: []byte("k"), Value: []byte("v")}))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open("/db", &Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := mustRanges(t, e); !slices.Equal(got, want) {
		t.Fatalf("Ranges after reopen = %v, want %v", got, want)
	}
	if st := mustState(t, e, 1); !st.Span.Equal(base.NoSpan) {
		t.Fatalf("meta span after reopen: %v", st.Span)
	}
	// DestroyRange removes the range-local keys and keeps the data.
	if err := e.DestroyRange(3); err != nil {
		t.Fatal(err)
	}
	if got := mustRanges(t, e); !slices.Equal(got, []base.RangeID{1, 256, big}) {
		t.Fatalf("Ranges after destroy = %v", got)
	}
	if a, _ := e.AppliedIndex(3); a != 0 {
		t.Fatalf("applied %d after destroy", a)
	}
	if _, err := e.GetLocal(3, []byte("k")); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("local record after destroy: %v", err)
	}
	if v, err := e.Get([]byte("b")); err != nil || string(v.Data) != "1" {
		t.Fatalf("data after destroy: %v, %v", v, err)
	}
	start, end := base.RangeLocalSpan(3)
	for k := range dump(t, e) {
		if k >= string(start) && k < string(end) {
			t.Fatalf("range-local key %q left", k)
		}
	}
}

func TestSplitMergeFreeze(t *testing.T) {
	e := openMem(t)
	mustInit(t, e, 3, base.FullSpan)
	mustApply(t, e, 3, entry(1, put("b", "1"), put("x", "1")), entry(5, put("x", "2")))
	res := mustApply(t, e, 3, entry(6, SplitCommand([]byte("m"), 4, testMembers)))
	wantCodes(t, res, ResultApplied)
	left := RangeState{Span: base.Span{End: []byte("m")}, Generation: 1}
	right := RangeState{Span: from("m"), Generation: 1, VersionBase: 6}
	if s := res[0].Split; s == nil || s.Left != 3 || s.Right != 4 || !s.LeftState.Equal(left) || !s.RightState.Equal(right) ||
		!maps.Equal(s.Members, testMembers) {
		t.Fatalf("split result %+v", s)
	}
	if m, ok, err := e.SplitMembers(4); err != nil || !ok || !maps.Equal(m, testMembers) {
		t.Fatalf("split members of the new range: %v %v %v", m, ok, err)
	}
	if _, ok, err := e.SplitMembers(3); err != nil || ok {
		t.Fatalf("split members of a range no split created: %v %v", ok, err)
	}
	if st := mustState(t, e, 3); !st.Equal(left) {
		t.Fatalf("left state %v", st)
	}
	if st := mustState(t, e, 4); !st.Equal(right) {
		t.Fatalf("right state %v", st)
	}
	if a, _ := e.AppliedIndex(4); a != 0 {
		t.Fatalf("right applied %d", a)
	}
	if got := mustRanges(t, e); !slices.Equal(got, []base.RangeID{3, 4}) {
		t.Fatalf("Ranges = %v", got)
	}
	// Data stays where it is; writes go to the side that owns the key, and versions go up.
	wantCodes(t, mustApply(t, e, 3, entry(7, put("x", "bad"))), ResultOutOfSpan)
	wantCodes(t, mustApply(t, e, 4, entry(1, put("b", "bad"), put("y", "1"))), ResultOutOfSpan)
	wantCodes(t, mustApply(t, e, 4, entry(2, put("x", "3"))), ResultApplied)
	if v, _ := e.Get([]byte("x")); v.Version != 8 || string(v.Data) != "3" {
		t.Fatalf("x after split = %+v, want version 8 (> 5)", v)
	}
	wantCodes(t, mustApply(t, e, 3, entry(8, put("b", "2"))), ResultApplied)
	if v, _ := e.Get([]byte("b")); v.Version != 8 {
		t.Fatalf("b = %+v", v)
	}

	// Freeze refuses writes (data, local, split), not unfreeze; freeze twice is a no-op.
	wantCodes(t, mustApply(t, e, 4,
		entry(3, FreezeCommand()), entry(4, FreezeCommand()), entry(5, put("y", "1")),
		entry(6, Command{Op: OpPutLocal, Key: []byte("k"), Value: []byte("v")}),
		entry(7, SplitCommand([]byte("s"), 5, testMembers)), entry(8, UnfreezeCommand()), entry(9, put("y", "2")),
		entry(10, FreezeCommand()), Entry{Index: 11}, entry(12)),
		ResultApplied, ResultApplied, ResultFrozen, ResultFrozen, ResultFrozen, ResultApplied, ResultApplied,
		ResultApplied, ResultApplied, ResultApplied)
	if v, _ := e.Get([]byte("y")); string(v.Data) != "2" || v.Version != 15 {
		t.Fatalf("y = %+v", v)
	}
	if st := mustState(t, e, 4); !st.Frozen || st.Generation != 1 {
		t.Fatalf("frozen right state %v", st)
	}
	rv, err := e.RangeVersion(4)
	if err != nil || rv != 18 {
		t.Fatalf("RangeVersion(4) = %d, %v; want 18", rv, err)
	}
	rst := mustState(t, e, 4)

	// Merges that do not fit are rejected.
	bad := []MergeArgs{
		{Right: 4, RightSpan: from("n"), RightGeneration: 1, RightVersion: rv}, // not adjacent
		{Right: 3, RightSpan: from("m"), RightGeneration: 1, RightVersion: rv}, // itself
	}
	for i, a := range bad {
		res := mustApply(t, e, 3, entry(uint64(9+i), MergeCommand(a)))
		if res[0].Code != ResultRejected || !errors.Is(res[0].Err, base.ErrInvalidRange) {
			t.Fatalf("bad merge %d: %+v", i, res[0])
		}
	}
	res = mustApply(t, e, 3, entry(11, MergeCommand(MergeArgs{Right: 4, RightSpan: rst.Span, RightGeneration: rst.Generation, RightVersion: rv})))
	wantCodes(t, res, ResultApplied)
	merged := RangeState{Span: base.FullSpan, Generation: 2, VersionBase: rv - 11}
	if m := res[0].Merge; m == nil || m.Left != 3 || m.Right != 4 || !m.LeftState.Equal(merged) {
		t.Fatalf("merge result %+v", m)
	}
	if st := mustState(t, e, 3); !st.Equal(merged) {
		t.Fatalf("merged state %v, want %v", st, merged)
	}
	if _, ok, _ := e.RangeState(4); ok {
		t.Fatal("right state still there after the merge")
	}
	if got := mustRanges(t, e); !slices.Equal(got, []base.RangeID{3}) {
		t.Fatalf("Ranges = %v", got)
	}
	// A key the right range wrote is rewritten by the merged range at a higher version.
	wantCodes(t, mustApply(t, e, 3, entry(12, put("y", "3"), put("x", "4"))), ResultApplied)
	for _, k := range []string{"x", "y"} {
		if v, _ := e.Get([]byte(k)); v.Version <= rv || v.Version != merged.VersionBase+12 {
			t.Fatalf("%s after merge = %+v, want version %d > %d", k, v, merged.VersionBase+12, rv)
		}
	}
	// Merging an unbounded range is rejected.
	res = mustApply(t, e, 3, entry(13, MergeCommand(MergeArgs{Right: 9, RightSpan: from("z")})))
	if res[0].Code != ResultRejected {
		t.Fatalf("merge into an unbounded range: %+v", res[0])
	}
}

func TestSplitRejects(t *testing.T) {
	e := openMem(t)
	mustInit(t, e, 3, sp("c", "m"))
	for i, c := range []Command{
		SplitCommand([]byte("c"), 4, testMembers), SplitCommand([]byte("b"), 4, testMembers), SplitCommand([]byte("m"), 4, testMembers),
		SplitCommand([]byte("z"), 4, testMembers), SplitCommand([]byte("d"), 3, testMembers),
	} {
		res := mustApply(t, e, 3, entry(uint64(i+1), c))
		if res[0].Code != ResultRejected || !errors.Is(res[0].Err, base.ErrInvalidRange) {
			t.Fatalf("split %d (%q -> %x): %+v", i, c.Key, c.Value, res[0])
		}
	}
	if st := mustState(t, e, 3); !st.Equal(RangeState{Span: sp("c", "m")}) {
		t.Fatalf("state after rejected splits: %v", st)
	}
	// Admin commands of a range without a state are rejected; data writes are out of span; local
	// writes apply.
	res := mustApply(t, e, 9, entry(1, FreezeCommand()), entry(2, SplitCommand([]byte("d"), 10, testMembers)), entry(3, put("d", "1")),
		entry(4, Command{Op: OpPutLocal, Key: []byte("k"), Value: []byte("v")}))
	wantCodes(t, res, ResultRejected, ResultRejected, ResultOutOfSpan, ResultApplied)
	if a, _ := e.AppliedIndex(9); a != 4 {
		t.Fatalf("stateless range applied %d", a)
	}
	// A split whose new range already has a state here changes the left side only.
	existing := RangeState{Span: sp("f", "m"), Generation: 7, VersionBase: 100}
	if err := e.InitRange(4, existing); err != nil {
		t.Fatal(err)
	}
	res = mustApply(t, e, 3, entry(10, SplitCommand([]byte("g"), 4, testMembers)))
	wantCodes(t, res, ResultApplied)
	if st := mustState(t, e, 4); !st.Equal(existing) {
		t.Fatalf("existing right state changed: %v", st)
	}
	if st := mustState(t, e, 3); !st.Equal(RangeState{Span: sp("c", "g"), Generation: 1}) {
		t.Fatalf("left state %v", st)
	}
	// Split and merge back in one Apply call.
	res = mustApply(t, e, 3, entry(11, SplitCommand([]byte("e"), 5, testMembers)),
		entry(12, MergeCommand(MergeArgs{Right: 5, RightSpan: sp("e", "g"), RightGeneration: 2, RightVersion: 11})))
	wantCodes(t, res, ResultApplied, ResultApplied)
	if _, ok, _ := e.RangeState(5); ok {
		t.Fatal("range 5 state survived its merge in the same batch")
	}
	if st := mustState(t, e, 3); !st.Equal(RangeState{Span: sp("c", "g"), Generation: 3}) {
		t.Fatalf("state after split+merge: %v", st)
	}
}

func TestLocalCommands(t *testing.T) {
	e := openMem(t)
	const meta = base.MetaRangeID
	mustInit(t, e, meta, base.NoSpan)
	putL := func(k, v string) Command { return Command{Op: OpPutLocal, Key: []byte(k), Value: []byte(v)} }
	delL := func(k string) Command { return Command{Op: OpDeleteLocal, Key: []byte(k)} }
	cput := func(k, v, expect string) Command {
		return Command{Op: OpCPutLocal, Key: []byte(k), Value: []byte(v), Expect: []byte(expect)}
	}
	cputAbsent := func(k, v string) Command {
		return Command{Op: OpCPutLocal, Key: []byte(k), Value: []byte(v), ExpectAbsent: true}
	}
	res := mustApply(t, e, meta,
		entry(1, putL("desc/3", "a"), putL("desc/4", "b"), putL("node/1", "n")),
		entry(2, put("a", "1")), // a system range owns no user key
		entry(3, cputAbsent("desc/5", "c"), cput("desc/3", "a2", "a")),
		entry(4, putL("desc/6", "x"), cput("desc/4", "b2", "wrong")), // all or nothing
		entry(5, cputAbsent("desc/3", "y")),
		entry(6, delL("desc/4"), cputAbsent("desc/4", "b3")), // sees the entry's own delete
		entry(7, cput("desc/5", "c2", "c"), cput("desc/5", "c3", "c2")),
		entry(8, cput("desc/7", "z", "")), // absent is not the empty value
	)
	wantCodes(t, res, ResultApplied, ResultOutOfSpan, ResultApplied, ResultConditionFailed, ResultConditionFailed,
		ResultApplied, ResultApplied, ResultConditionFailed)
	// A condition sees writes of earlier entries of the same Apply call and of earlier calls.
	res = mustApply(t, e, meta, entry(9, putL("desc/8", "p")), entry(10, cput("desc/8", "q", "p"), cput("desc/3", "a3", "a2")))
	wantCodes(t, res, ResultApplied, ResultApplied)
	want := map[string]Value{"desc/3": {10, []byte("a3")}, "desc/4": {6, []byte("b3")}, "desc/5": {7, []byte("c3")},
		"desc/8": {10, []byte("q")}, "node/1": {1, []byte("n")}}
	for k, w := range want {
		v, err := e.GetLocal(meta, []byte(k))
		if err != nil || v.Version != w.Version || !bytes.Equal(v.Data, w.Data) {
			t.Errorf("GetLocal(%s) = %+v, %v; want %+v", k, v, err, w)
		}
	}
	for _, k := range []string{"desc/6", "desc/7", "nope"} {
		if _, err := e.GetLocal(meta, []byte(k)); !errors.Is(err, base.ErrNotFound) {
			t.Errorf("GetLocal(%s): %v", k, err)
		}
	}
	if _, err := e.Get([]byte("a")); !errors.Is(err, base.ErrNotFound) {
		t.Fatal("an out-of-span write landed")
	}
	kvs, err := e.ScanLocal(meta, []byte("desc/"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range kvs {
		keys = append(keys, string(kv.Key))
	}
	if !slices.Equal(keys, []string{"desc/3", "desc/4", "desc/5", "desc/8"}) {
		t.Fatalf("ScanLocal keys %q", keys)
	}
	if kvs, _ := e.ScanLocal(meta, nil, 2); len(kvs) != 2 || string(kvs[0].Key) != "desc/3" {
		t.Fatalf("ScanLocal(nil, 2) = %v", kvs)
	}
	if kvs, _ := e.ScanLocal(meta, []byte("node/"), 0); len(kvs) != 1 || string(kvs[0].Value.Data) != "n" {
		t.Fatalf("ScanLocal(node/) = %v", kvs)
	}
	if kvs, _ := e.ScanLocal(meta+1, nil, 0); len(kvs) != 0 {
		t.Fatalf("another range's local records: %v", kvs)
	}
	// Local records are not user data.
	if kvs, _ := e.Scan(base.FullSpan, 0); len(kvs) != 0 {
		t.Fatalf("Scan sees local records: %v", kvs)
	}
	if _, err := e.GetLocal(meta, nil); !errors.Is(err, base.ErrEmptyKey) {
		t.Fatalf("GetLocal(empty): %v", err)
	}
}

// TestSnapshotOfSplitRange: a replica still at the pre-split span recovers a snapshot of the
// split range: it adopts the new span and keeps the data outside it (owned by the right range).
func TestSnapshotOfSplitRange(t *testing.T) {
	src, dst := openMem(t), openMem(t)
	pre := []Entry{entry(1, put("b", "1"), put("x", "1"), Command{Op: OpPutLocal, Key: []byte("txn"), Value: []byte("t")}), entry(2, put("c", "2"))}
	for _, e := range []*Engine{src, dst} {
		mustInit(t, e, 3, base.FullSpan)
		mustApply(t, e, 3, pre...)
	}
	mustApply(t, src, 3, entry(3, SplitCommand([]byte("m"), 4, testMembers)), entry(4, put("b", "3")))
	stream, applied := writeSnapshot(t, src, 3)
	if err := dst.RecoverSnapshot(3, bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	if a, _ := dst.AppliedIndex(3); a != applied {
		t.Fatalf("applied %d, want %d", a, applied)
	}
	if got, want := mustState(t, dst, 3), mustState(t, src, 3); !got.Equal(want) {
		t.Fatalf("state after recover %v, want %v", got, want)
	}
	if v, err := dst.Get([]byte("x")); err != nil || string(v.Data) != "1" {
		t.Fatalf("data outside the new span: %+v, %v", v, err)
	}
	if v, _ := dst.Get([]byte("b")); string(v.Data) != "3" {
		t.Fatalf("b = %+v", v)
	}
	if v, err := dst.GetLocal(3, []byte("txn")); err != nil || string(v.Data) != "t" {
		t.Fatalf("local record: %+v, %v", v, err)
	}
	a1, s1 := mustChecksum(t, src, 3)
	a2, s2 := mustChecksum(t, dst, 3)
	if a1 != a2 || s1 != s2 {
		t.Fatal("checksums differ after recover")
	}
	// The recovered range continues: out of span to the right, versions as on the source.
	for _, e := range []*Engine{src, dst} {
		wantCodes(t, mustApply(t, e, 3, entry(5, put("y", "1")), entry(6, put("d", "1"))), ResultOutOfSpan, ResultApplied)
	}
	_, s1 = mustChecksum(t, src, 3)
	_, s2 = mustChecksum(t, dst, 3)
	if s1 != s2 {
		t.Fatal("checksums differ after applying the same entries")
	}
}

// TestNoSpanRange: a system range's snapshot, checksum and clear involve its range-local keys
// only.
func TestNoSpanRange(t *testing.T) {
	src, dst := openMem(t), openMem(t)
	for _, e := range []*Engine{src, dst} {
		mustInit(t, e, 1, base.NoSpan)
		mustInit(t, e, 3, base.FullSpan)
		mustApply(t, e, 3, entry(1, put("a", "1"), put("\x00", "2")))
	}
	mustApply(t, src, 1, entry(1, Command{Op: OpPutLocal, Key: []byte("desc"), Value: []byte("d")}))
	mustApply(t, dst, 1, entry(1, Command{Op: OpPutLocal, Key: []byte("other"), Value: []byte("o")}), entry(2))
	_, before := mustChecksum(t, dst, 1)
	stream, _ := writeSnapshot(t, src, 1)
	dstBefore := dump(t, dst)
	if err := dst.RecoverSnapshot(1, bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	a1, s1 := mustChecksum(t, src, 1)
	a2, s2 := mustChecksum(t, dst, 1)
	if a1 != a2 || s1 != s2 || s2 == before {
		t.Fatalf("checksums: src (%d %x), dst (%d %x), before %x", a1, s1, a2, s2, before)
	}
	if _, err := dst.GetLocal(1, []byte("other")); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("old local record survived: %v", err)
	}
	if got, want := without(dump(t, dst), 1, base.NoSpan), without(dstBefore, 1, base.NoSpan); !maps.Equal(got, want) {
		t.Fatal("recovering the meta range touched other keys")
	}
	before2 := dump(t, dst)
	if err := dst.ClearRange(1); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, dst), without(before2, 1, base.NoSpan); !maps.Equal(got, want) {
		t.Fatal("ClearRange of a NoSpan range touched other keys")
	}
	if _, ok, _ := dst.RangeState(1); ok {
		t.Fatal("state survived ClearRange")
	}
}

func TestChecksumCoversState(t *testing.T) {
	a, b := openMem(t), openMem(t)
	for _, e := range []*Engine{a, b} {
		mustInit(t, e, 3, base.FullSpan)
		mustApply(t, e, 3, entry(1, put("k", "v")))
	}
	_, sa := mustChecksum(t, a, 3)
	_, sb := mustChecksum(t, b, 3)
	if sa != sb {
		t.Fatal("equal replicas differ")
	}
	mustApply(t, a, 3, entry(2, FreezeCommand()))
	mustApply(t, b, 3, entry(2))
	_, sa = mustChecksum(t, a, 3)
	_, sb = mustChecksum(t, b, 3)
	if sa == sb {
		t.Fatal("a frozen and an unfrozen replica have the same checksum")
	}
	mustApply(t, b, 3, entry(3, Command{Op: OpPutLocal, Key: []byte("l"), Value: []byte("1")}))
	mustApply(t, a, 3, entry(3, UnfreezeCommand()))
	_, sa = mustChecksum(t, a, 3)
	_, sb = mustChecksum(t, b, 3)
	if sa == sb {
		t.Fatal("a range-local record is not covered")
	}
}

func TestApproximateSizeAndSplitKey(t *testing.T) {
	e := openMem(t)
	mustInit(t, e, 3, base.FullSpan)
	if k, err := e.SplitKey(base.FullSpan); err != nil || k != nil {
		t.Fatalf("SplitKey of nothing: %q, %v", k, err)
	}
	mustApply(t, e, 3, entry(1, put("k000", "v")))
	if k, _ := e.SplitKey(base.FullSpan); k != nil {
		t.Fatalf("SplitKey of one key: %q", k)
	}
	var cmds []Command
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		v := make([]byte, 1000)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		cmds = append(cmds, Command{Op: OpPut, Key: fmt.Appendf(nil, "k%03d", i), Value: v})
	}
	mustApply(t, e, 3, entry(2, cmds...))
	k, err := e.SplitKey(base.FullSpan)
	if err != nil || string(k) < "k090" || string(k) > "k110" {
		t.Fatalf("SplitKey = %q, %v; want about k100", k, err)
	}
	// Two keys, the first much larger: the split key is still the second.
	mustApply(t, e, 3, entry(3, Command{Op: OpPut, Key: []byte("z1"), Value: make([]byte, 5000)}, put("z2", "")))
	if k, _ := e.SplitKey(from("z")); string(k) != "z2" {
		t.Fatalf("SplitKey(z...) = %q", k)
	}
	if k, _ := e.SplitKey(base.NoSpan); k != nil {
		t.Fatalf("SplitKey(NoSpan) = %q", k)
	}
	if err := e.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	if n, err := e.ApproximateSize(sp("k", "l")); err != nil || n < 100<<10 {
		t.Fatalf("ApproximateSize = %d, %v; want about 200 KB", n, err)
	}
	if n, err := e.ApproximateSize(base.NoSpan); err != nil || n != 0 {
		t.Fatalf("ApproximateSize(NoSpan) = %d, %v", n, err)
	}
}

func TestClearSpan(t *testing.T) {
	e := openMem(t)
	mustInit(t, e, 3, base.FullSpan)
	mustApply(t, e, 3, entry(1, put("a", "1"), put("m", "1"), put("z", "1")))
	if err := e.ClearSpan(base.Span{Start: []byte("b"), End: []byte("n")}); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]bool{"a": true, "m": false, "z": true} {
		_, err := e.Get([]byte(k))
		if got := err == nil; got != want {
			t.Errorf("%s present %v after clearing [b, n), want %v (%v)", k, got, want, err)
		}
	}
	if st := mustState(t, e, 3); !st.Span.Equal(base.FullSpan) {
		t.Fatalf("ClearSpan changed the range's state: %v", st)
	}
	if err := e.ClearSpan(base.Span{Start: []byte("n"), End: []byte("b")}); !errors.Is(err, base.ErrInvalidRange) {
		t.Fatalf("inverted span: %v", err)
	}
}
