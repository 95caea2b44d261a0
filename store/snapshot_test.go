package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

var (
	span3 = base.Span{Start: []byte("a"), End: []byte("m")} // range 3
	span4 = base.Span{Start: []byte("m")}                   // range 4, unbounded
)

// fillRanges gives e data in ranges 3 and 4, intents and range-local metadata (written raw: the
// store has no intent API yet, but snapshots must carry them), and a node-local key.
func fillRanges(t testing.TB, e *Engine, rng *rand.Rand, tag string) {
	t.Helper()
	mustInit(t, e, 3, span3)
	mustInit(t, e, 4, span4)
	var next3, next4 uint64
	for range 10 {
		entries := randomBatch(rng, &next3)
		for i := range entries {
			cmds, _ := DecodeCommands(entries[i].Data)
			for j := range cmds {
				cmds[j].Key = append([]byte("b"+tag), cmds[j].Key...) // inside span3
			}
			entries[i].Data = EncodeCommands(nil, cmds)
		}
		mustApply(t, e, 3, entries...)
		mustApply(t, e, 4, entry(next4+1, put("q"+tag+fmt.Sprint(next4), "range4")))
		next4++
	}
	b := e.DB().NewBatch()
	for _, kv := range [][2]string{
		{"i/b" + tag + "intent", "intent-of-" + tag},
		{"i/z" + tag, "intent-in-range-4"},
		{string(base.RangeLocalKey(3, "desc")), "desc-" + tag},
		{string(base.RangeLocalKey(3, "txn/"+tag)), "txnrecord"},
		{string(base.RangeLocalKey(4, "desc")), "desc4-" + tag},
	} {
		if err := b.Set([]byte(kv[0]), []byte(kv[1]), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := e.PutNodeLocal("identity", []byte("node-"+tag)); err != nil {
		t.Fatal(err)
	}
}

// rangeDump is every engine key of range 3's three spans.
func rangeDump(t testing.TB, e *Engine, id base.RangeID, span base.Span) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := forEachInSpans(e.DB(), snapshotSpans(id, span).all(), func(k, v []byte) (bool, error) {
		out[string(k)] = string(v)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// without returns d minus the keys of range id's spans.
func without(d map[string]string, id base.RangeID, span base.Span) map[string]string {
	s := snapshotSpans(id, span)
	out := map[string]string{}
	for k, v := range d {
		if s.kind([]byte(k)) == spanNone {
			out[k] = v
		}
	}
	return out
}

func writeSnapshot(t testing.TB, e *Engine, id base.RangeID) ([]byte, uint64) {
	t.Helper()
	snap, err := e.NewSnapshot(id)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var buf bytes.Buffer
	n, err := snap.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes(), snap.AppliedIndex()
}

func TestSnapshotRoundTrip(t *testing.T) {
	const seed = 42
	rng := rand.New(rand.NewPCG(seed, 1))
	src, dst := openMem(t), openMem(t)
	fillRanges(t, src, rng, "S")
	fillRanges(t, dst, rng, "D") // keys only in the target, in every span

	snap, err := src.NewSnapshot(3)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if !snap.Span().Equal(span3) {
		t.Fatalf("snapshot span %s", snap.Span())
	}
	wantApplied, wantSum := mustChecksum(t, src, 3)
	if snap.AppliedIndex() != wantApplied {
		t.Fatalf("snapshot applied %d, checksum applied %d", snap.AppliedIndex(), wantApplied)
	}
	wantRange := rangeDump(t, src, 3, span3)
	// Writes after the snapshot are not in it.
	mustApply(t, src, 3, entry(wantApplied+1, put("bafter", "x")))
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	stream := buf.Bytes()
	// A snapshot can be written again, identically.
	var again bytes.Buffer
	if _, err := snap.WriteTo(&again); err != nil || !bytes.Equal(again.Bytes(), stream) {
		t.Fatalf("second WriteTo differs (%v)", err)
	}

	dstBefore := dump(t, dst)
	_, sum4 := mustChecksum(t, dst, 4)
	targetOnly := 0
	for k := range rangeDump(t, dst, 3, span3) {
		if _, ok := wantRange[k]; !ok {
			targetOnly++
		}
	}
	if targetOnly == 0 {
		t.Fatal("test setup: the target has no keys of its own in range 3")
	}
	if err := dst.RecoverSnapshot(3, bytes.NewReader(stream)); err != nil {
		t.Fatalf("seed %d: recover: %v", seed, err)
	}
	if n, n3, n4 := dst.SnapshotsRecovered(), dst.SnapshotsRecovered(3), dst.SnapshotsRecovered(4); n != 1 || n3 != 1 || n4 != 0 {
		t.Fatalf("SnapshotsRecovered: all %d, range 3 %d, range 4 %d", n, n3, n4)
	}
	applied, sum := mustChecksum(t, dst, 3)
	if applied != wantApplied || sum != wantSum {
		t.Fatalf("seed %d: recovered checksum (%d, %x), want (%d, %x)", seed, applied, sum, wantApplied, wantSum)
	}
	if got, _ := dst.AppliedIndex(3); got != wantApplied {
		t.Fatalf("applied index %d after recover, want %d", got, wantApplied)
	}
	// The three spans are exactly the source's: keys only in the target are gone.
	if got := rangeDump(t, dst, 3, span3); !maps.Equal(got, wantRange) {
		t.Fatalf("seed %d: range 3 after recover has %d keys, source %d", seed, len(got), len(wantRange))
	}
	// Everything else of the target (range 4, node-local keys) is untouched.
	if got, want := without(dump(t, dst), 3, span3), without(dstBefore, 3, span3); !maps.Equal(got, want) {
		t.Fatalf("seed %d: recover touched other ranges or node-local keys", seed)
	}
	if _, s := mustChecksum(t, dst, 4); s != sum4 {
		t.Fatal("recover changed range 4's checksum")
	}
	if id, err := dst.GetNodeLocal("identity"); err != nil || string(id) != "node-D" {
		t.Fatalf("node identity after recover: %q, %v", id, err)
	}
	// Apply continues from the snapshot's index.
	if res := mustApply(t, dst, 3, entry(wantApplied, put("bx", "1")), entry(wantApplied+1, put("bafter", "x"))); res[0].Code != ResultSkipped || res[1].Code != ResultApplied {
		t.Fatalf("apply after recover: %+v", res)
	}
	_, s1 := mustChecksum(t, src, 3)
	_, s2 := mustChecksum(t, dst, 3)
	if s1 != s2 {
		t.Fatal("engines diverged after applying the same entry")
	}
}

func TestSnapshotEmptyRange(t *testing.T) {
	src, dst := openMem(t), openMem(t)
	mustInit(t, src, 3, span3)
	mustInit(t, dst, 3, span3)
	mustApply(t, dst, 3, entry(7, put("b", "1"), Command{Op: OpPutLocal, Key: []byte("l"), Value: []byte("v")}))
	stream, applied := writeSnapshot(t, src, 3)
	if applied != 0 {
		t.Fatalf("applied %d", applied)
	}
	if err := dst.RecoverSnapshot(3, bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	if got := rangeDump(t, dst, 3, span3); len(got) != 2 { // only the applied index and the state
		t.Fatalf("range not emptied: %v", got)
	}
	if a, _ := dst.AppliedIndex(3); a != 0 {
		t.Fatalf("applied %d", a)
	}
}

func TestRecoverSnapshotRejects(t *testing.T) {
	const seed = 7
	rng := rand.New(rand.NewPCG(seed, 2))
	src, dst := openMem(t), openMem(t)
	fillRanges(t, src, rng, "S")
	fillRanges(t, dst, rng, "D")
	stream, _ := writeSnapshot(t, src, 3)
	before := dump(t, dst)
	_, sumBefore := mustChecksum(t, dst, 3)
	unchanged := func(what string) {
		t.Helper()
		if _, sum := mustChecksum(t, dst, 3); sum != sumBefore {
			t.Fatalf("seed %d: %s changed the target's checksum", seed, what)
		}
		if !maps.Equal(before, dump(t, dst)) {
			t.Fatalf("seed %d: %s changed the target", seed, what)
		}
	}
	isCorrupt := func(err error) bool { return errors.Is(err, base.ErrCorruption) }
	isMismatch := func(err error) bool { var m *SnapshotMismatchError; return errors.As(err, &m) }

	// Truncated: every prefix up to a few hundred bytes, then random ones, then the exact cuts
	// inside the checksum.
	cuts := []int{0, len(stream) - 1, len(stream) - 32, len(stream) - 33}
	for i := 1; i < min(300, len(stream)); i++ {
		cuts = append(cuts, i)
	}
	for range 50 {
		cuts = append(cuts, rng.IntN(len(stream)))
	}
	for _, n := range cuts {
		if err := dst.RecoverSnapshot(3, bytes.NewReader(stream[:n])); !isCorrupt(err) {
			t.Fatalf("seed %d: stream cut at %d of %d: %v, want ErrCorruption", seed, n, len(stream), err)
		}
	}
	unchanged("a truncated stream")

	// A flipped byte anywhere: corruption (the header's span must match the stream's state), or
	// a mismatch where it lands in the header's id.
	for range 200 {
		bad := bytes.Clone(stream)
		pos := rng.IntN(len(bad))
		bad[pos] ^= byte(1 + rng.IntN(255))
		if err := dst.RecoverSnapshot(3, bytes.NewReader(bad)); !isCorrupt(err) && !isMismatch(err) {
			t.Fatalf("seed %d: byte %d flipped: %v", seed, pos, err)
		}
	}
	unchanged("a corrupted stream")

	// Trailing data.
	if err := dst.RecoverSnapshot(3, bytes.NewReader(append(bytes.Clone(stream), 0))); !isCorrupt(err) {
		t.Fatalf("trailing byte: %v", err)
	}
	// Another range.
	var m *SnapshotMismatchError
	if err := dst.RecoverSnapshot(4, bytes.NewReader(stream)); !errors.As(err, &m) || m.GotID != 3 || m.WantID != 4 {
		t.Fatalf("wrong range id: %v", err)
	}
	// A read error is returned as such, not as corruption.
	boom := errors.New("boom")
	if err := dst.RecoverSnapshot(3, &failingReader{data: stream, at: len(stream) / 2, err: boom}); !errors.Is(err, boom) || isCorrupt(err) {
		t.Fatalf("read error: %v", err)
	}
	unchanged("the rejected streams")
	if n := dst.SnapshotsRecovered(); n != 0 {
		t.Fatalf("rejected streams counted as recovered: %d", n)
	}
}

type failingReader struct {
	data []byte
	at   int
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.at <= 0 {
		return 0, f.err
	}
	n := copy(p, f.data[:min(len(f.data), f.at)])
	f.data, f.at = f.data[n:], f.at-n
	return n, nil
}

// TestSnapshotStreamCanonical crafts streams by hand: records out of order, outside the range,
// duplicating the applied index, or with an undecodable value record are rejected even with a
// valid checksum.
func TestSnapshotStreamCanonical(t *testing.T) {
	rec := func(v uint64, data string) string {
		b := make([]byte, recordLen(len(data)))
		putRecord(b, v, false, []byte(data))
		return string(b)
	}
	state := string(base.StateKey(3))
	st3 := string(encodeState(RangeState{Span: span3}))
	craftSpan := func(span base.Span, kvs ...string) []byte {
		var buf bytes.Buffer
		w := newSnapshotWriter(&buf, 3, span, 9)
		for i := 0; i < len(kvs); i += 2 {
			w.record([]byte(kvs[i]), []byte(kvs[i+1]))
		}
		if _, err := w.finish(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	craft := func(kvs ...string) []byte { return craftSpan(span3, kvs...) }
	local := string(base.LocalUserKey(3, []byte("k")))
	good := craft("d/b", rec(1, "x"), "d/c", rec(2, "y"), "i/b", "intent", string(base.RangeLocalKey(3, "desc")), "d", state, st3, local, rec(3, "z"))
	noop := func(k, v []byte) error { return nil }
	if _, st, err := readSnapshot(bytes.NewReader(good), 3, nil, noop); err != nil || !st.Equal(RangeState{Span: span3}) {
		t.Fatalf("good stream: %v, %v", st, err)
	}
	noSpan := string(encodeState(RangeState{Span: base.NoSpan}))
	if _, _, err := readSnapshot(bytes.NewReader(craftSpan(base.NoSpan, state, noSpan)), 3, nil, noop); err != nil {
		t.Fatalf("NoSpan stream: %v", err)
	}
	for name, s := range map[string][]byte{
		"descending":         craft("d/c", rec(1, "x"), "d/b", rec(2, "y"), state, st3),
		"duplicate":          craft("d/b", rec(1, "x"), "d/b", rec(2, "y"), state, st3),
		"data outside span":  craft("d/z", rec(1, "x"), state, st3),
		"other range local":  craft(string(base.RangeLocalKey(4, "desc")), "d", state, st3),
		"node-local":         craft(state, st3, "x/identity", "n"),
		"applied index":      craft(string(base.AppliedIndexKey(3)), "\x00\x00\x00\x00\x00\x00\x00\x09", state, st3),
		"bad value record":   craft("d/b", "short", state, st3),
		"bad local record":   craft(state, st3, local, "short"),
		"empty user key":     craft("d/", rec(1, "x"), state, st3),
		"no state":           craft("d/b", rec(1, "x")),
		"bad state":          craft(state, st3[1:]),
		"state of a span":    craft(state, string(encodeState(RangeState{Span: span4}))),
		"data in NoSpan":     craftSpan(base.NoSpan, "d/b", rec(1, "x"), state, noSpan),
		"non-canonical none": craftSpan(base.Span{Start: []byte("b"), End: []byte("a")}, state, noSpan),
	} {
		if _, _, err := readSnapshot(bytes.NewReader(s), 3, nil, noop); !errors.Is(err, base.ErrCorruption) {
			t.Errorf("%s: %v, want ErrCorruption", name, err)
		}
	}
}

func TestSnapshotStop(t *testing.T) {
	e := openMem(t)
	mustInit(t, e, 3, span3)
	mustApply(t, e, 3, entry(1, put("b", "1"), put("c", "2")))
	snap, err := e.NewSnapshot(3)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var buf bytes.Buffer
	if _, err := snap.WriteToContext(ctx, &buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled WriteTo: %v", err)
	}
	if err := e.RecoverSnapshot(3, &buf); !errors.Is(err, base.ErrCorruption) {
		t.Fatalf("recovering a stopped stream: %v", err)
	}
	if err := snap.Close(); err != nil {
		t.Fatal(err)
	}
	if err := snap.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := snap.WriteTo(&buf); !errors.Is(err, base.ErrClosed) {
		t.Fatalf("WriteTo after Close: %v", err)
	}
	if _, err := e.NewSnapshot(9); !errors.Is(err, base.ErrInvalidRange) {
		t.Fatalf("snapshot of a range without a state: %v", err)
	}
}

func TestClearRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	e := openMem(t)
	fillRanges(t, e, rng, "S")
	before := dump(t, e)
	if err := e.ClearRange(3); err != nil {
		t.Fatal(err)
	}
	if got := rangeDump(t, e, 3, span3); len(got) != 0 {
		t.Fatalf("%d keys left", len(got))
	}
	if a, _ := e.AppliedIndex(3); a != 0 {
		t.Fatalf("applied %d", a)
	}
	if !maps.Equal(without(dump(t, e), 3, span3), without(before, 3, span3)) {
		t.Fatal("ClearRange touched other keys")
	}
}

func FuzzReadSnapshot(f *testing.F) {
	rng := rand.New(rand.NewPCG(11, 11))
	e, err := Open("/db", &Options{FS: vfs.NewMem()})
	if err != nil {
		f.Fatal(err)
	}
	fillRanges(f, e, rng, "F")
	stream, _ := writeSnapshot(f, e, 3)
	mustInit(f, e, 5, span3)
	empty, _ := writeSnapshot(f, e, 5)
	if err := e.Close(); err != nil {
		f.Fatal(err)
	}
	f.Add(stream)
	f.Add(stream[:len(stream)/2])
	f.Add(empty)
	f.Add([]byte(snapshotMagic))
	f.Add([]byte(strings.Repeat("\xff", 64)))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, id := range []base.RangeID{3, 5} {
			var kvs [][2][]byte
			applied, st, err := readSnapshot(bytes.NewReader(data), id, nil, func(k, v []byte) error {
				kvs = append(kvs, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
				return nil
			})
			if err != nil {
				var m *SnapshotMismatchError
				if !errors.Is(err, base.ErrCorruption) && !errors.As(err, &m) {
					t.Fatalf("untyped error: %v", err)
				}
				continue
			}
			// Canonical: writing back what was read reproduces the stream.
			var buf bytes.Buffer
			w := newSnapshotWriter(&buf, id, st.Span, applied)
			for _, kv := range kvs {
				w.record(kv[0], kv[1])
			}
			if _, err := w.finish(); err != nil || !bytes.Equal(buf.Bytes(), data) {
				t.Fatalf("re-encoding differs (%v)", err)
			}
		}
	})
}
