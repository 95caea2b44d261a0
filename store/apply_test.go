package store

import (
	"bytes"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestApplyAndAppliedIndex(t *testing.T) {
	e := openMem(t)
	const id = base.FirstUserRangeID
	mustInit(t, e, id, base.FullSpan)
	if got, err := e.AppliedIndex(id); err != nil || got != 0 {
		t.Fatalf("fresh applied index = %d, %v", got, err)
	}
	res := mustApply(t, e, id,
		entry(5, put("a", "1"), put("b", "2")),
		entry(6, put("a", "3"), del("b"), put("c", "4")),
		Entry{Index: 7}, // a Raft no-op
	)
	for i, r := range res {
		if r.Code != ResultApplied || r.Err != nil {
			t.Fatalf("result %d = %+v", i, r)
		}
	}
	if got, _ := e.AppliedIndex(id); got != 7 {
		t.Fatalf("applied index = %d, want 7", got)
	}
	if v, err := e.Get([]byte("a")); err != nil || v.Version != 6 || string(v.Data) != "3" {
		t.Fatalf("Get(a) = %+v, %v", v, err)
	}
	if _, err := e.Get([]byte("b")); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("Get(b) after delete: %v", err)
	}
	if r, err := e.GetRecord([]byte("b")); err != nil || !r.Deleted || r.Version != 6 || r.Data != nil {
		t.Fatalf("GetRecord(b) = %+v, %v", r, err)
	}
	if _, err := e.GetRecord([]byte("zz")); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("GetRecord(never written): %v", err)
	}
	// Later commands of one entry win; a delete of a never-written key still records its version.
	mustApply(t, e, id, entry(8, put("d", "x"), put("d", "y"), del("never")))
	if v, _ := e.Get([]byte("d")); string(v.Data) != "y" || v.Version != 8 {
		t.Fatalf("Get(d) = %+v", v)
	}
	if r, _ := e.GetRecord([]byte("never")); !r.Deleted || r.Version != 8 {
		t.Fatalf("GetRecord(never) = %+v", r)
	}
}

func TestAppliedIndexSurvivesReopen(t *testing.T) {
	mem := vfs.NewMem()
	e, err := Open("/db", &Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	mustInit(t, e, 3, base.FullSpan)
	mustInit(t, e, 4, base.FullSpan)
	mustApply(t, e, 3, entry(10, put("k", "v")))
	mustApply(t, e, 4, entry(3, put("k2", "v")))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open("/db", &Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for id, want := range map[base.RangeID]uint64{3: 10, 4: 3, 5: 0} {
		if got, err := e.AppliedIndex(id); err != nil || got != want {
			t.Errorf("range %d: applied index %d, %v; want %d", id, got, err, want)
		}
	}
}

func TestApplyReapplyIsNoop(t *testing.T) {
	e := openMem(t)
	const id = 3
	mustInit(t, e, id, base.FullSpan)
	batch := []Entry{entry(1, put("a", "1")), entry(2, put("b", "2"), del("a")), entry(3, put("c", "3"))}
	mustApply(t, e, id, batch...)
	before := dump(t, e)
	_, sumBefore := mustChecksum(t, e, id)

	// The whole batch again, and a prefix of it: every entry skipped, nothing written.
	for _, b := range [][]Entry{batch, batch[:2], batch[2:]} {
		for i, r := range mustApply(t, e, id, b...) {
			if r.Code != ResultSkipped {
				t.Fatalf("re-apply: result %d = %v", i, r.Code)
			}
		}
	}
	if after := dump(t, e); !maps.Equal(before, after) {
		t.Fatalf("re-apply changed the engine")
	}
	if _, sum := mustChecksum(t, e, id); sum != sumBefore {
		t.Fatalf("re-apply changed the checksum")
	}

	// Overlapping: 2 and 3 are skipped, 4 applies.
	res := mustApply(t, e, id, entry(2, put("a", "bad")), entry(3, put("a", "bad")), entry(4, put("d", "4")))
	if res[0].Code != ResultSkipped || res[1].Code != ResultSkipped || res[2].Code != ResultApplied {
		t.Fatalf("overlap results: %+v", res)
	}
	if _, err := e.Get([]byte("a")); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("a skipped entry took effect: %v", err)
	}
	if got, _ := e.AppliedIndex(id); got != 4 {
		t.Fatalf("applied index %d, want 4", got)
	}
}

func TestApplyMalformedCall(t *testing.T) {
	e := openMem(t)
	mustInit(t, e, 3, base.FullSpan)
	mustApply(t, e, 3, entry(1, put("a", "1")))
	before := dump(t, e)
	if _, err := e.Apply(3, []Entry{entry(3, put("x", "1")), entry(2, put("y", "1"))}); err == nil {
		t.Fatal("descending indices accepted")
	}
	if _, err := e.Apply(3, []Entry{entry(3, put("x", "1")), entry(3, put("y", "1"))}); err == nil {
		t.Fatal("duplicate indices accepted")
	}
	if _, err := e.Apply(0, []Entry{entry(3, put("x", "1"))}); !errors.Is(err, base.ErrInvalidRange) {
		t.Fatalf("range 0: %v", err)
	}
	if !maps.Equal(before, dump(t, e)) {
		t.Fatal("a rejected call changed the engine")
	}
	if res, err := e.Apply(3, nil); err != nil || len(res) != 0 {
		t.Fatalf("empty apply: %v, %v", res, err)
	}
}

// rejectedEntries are entries every replica must reject whole, with the error each wraps.
func rejectedEntries() ([]Entry, []error) {
	bigKey := strings.Repeat("k", base.MaxKeySize+1)
	bigValue := strings.Repeat("v", base.MaxValueSize+1)
	entries := []Entry{
		{Index: 10, Data: []byte{9, 9, 9}},                                                  // unknown version
		{Index: 11, Data: EncodeCommands(nil, []Command{put("ok", "1"), put("", "x")})[:8]}, // truncated
		entry(12, put("ok", "1"), put("", "x")),                                             // empty key after a good command
		entry(13, put("ok", "1"), put(bigKey, "x")),
		entry(14, put("ok", "1"), put("big", bigValue)),
		entry(15, del("ok"), del(bigKey)),
		{Index: 16, Data: []byte{1, 1, 42, 1, 'a'}}, // unknown op
	}
	want := []error{base.ErrCorruption, base.ErrCorruption, base.ErrEmptyKey, base.ErrKeyTooLarge,
		base.ErrValueTooLarge, base.ErrKeyTooLarge, base.ErrCorruption}
	return entries, want
}

func TestApplyRejectedEntries(t *testing.T) {
	const id = 3
	entries, wantErrs := rejectedEntries()
	entries = append([]Entry{entry(9, put("ok", "0"))}, entries...)
	entries = append(entries, entry(17, put("after", "1")))

	var results [2][]Result
	var sums [2][32]byte
	for i := range 2 {
		e := openMem(t)
		mustInit(t, e, id, base.FullSpan)
		results[i] = mustApply(t, e, id, entries...)
		var applied uint64
		applied, sums[i] = mustChecksum(t, e, id)
		if applied != 17 {
			t.Fatalf("engine %d: applied %d, want 17 (rejected entries still count)", i, applied)
		}
		// No partial effect: "ok" keeps the value of entry 9, "big" was never written.
		if v, err := e.Get([]byte("ok")); err != nil || v.Version != 9 || string(v.Data) != "0" {
			t.Fatalf("engine %d: Get(ok) = %+v, %v", i, v, err)
		}
		if _, err := e.GetRecord([]byte("big")); !errors.Is(err, base.ErrNotFound) {
			t.Fatalf("engine %d: a rejected entry wrote big: %v", i, err)
		}
		if v, err := e.Get([]byte("after")); err != nil || v.Version != 17 {
			t.Fatalf("engine %d: Get(after) = %+v, %v", i, v, err)
		}
	}
	if sums[0] != sums[1] {
		t.Fatal("the two engines diverged")
	}
	for j := range entries {
		a, b := results[0][j], results[1][j]
		if a.Code != b.Code || (a.Err == nil) != (b.Err == nil) || (a.Err != nil && a.Err.Error() != b.Err.Error()) {
			t.Fatalf("entry %d: results differ: %+v vs %+v", entries[j].Index, a, b)
		}
	}
	for j, want := range wantErrs {
		r := results[0][j+1]
		if r.Code != ResultRejected || !errors.Is(r.Err, want) {
			t.Errorf("entry %d: %v %v, want rejected wrapping %v", entries[j+1].Index, r.Code, r.Err, want)
		}
	}
	if r := results[0][len(entries)-1]; r.Code != ResultApplied {
		t.Fatalf("last entry: %+v", r)
	}
}

func TestLimits(t *testing.T) {
	e := openMem(t)
	mustInit(t, e, 3, base.FullSpan)
	bigKey := bytes.Repeat([]byte("k"), base.MaxKeySize+1)
	for _, tc := range []struct {
		key  []byte
		want error
	}{{nil, base.ErrEmptyKey}, {[]byte{}, base.ErrEmptyKey}, {bigKey, base.ErrKeyTooLarge}} {
		if _, err := e.Get(tc.key); !errors.Is(err, tc.want) {
			t.Errorf("Get(%d-byte key): %v, want %v", len(tc.key), err, tc.want)
		}
		if _, err := e.GetRecord(tc.key); !errors.Is(err, tc.want) {
			t.Errorf("GetRecord(%d-byte key): %v, want %v", len(tc.key), err, tc.want)
		}
		if err := e.PutNodeLocal(string(tc.key), []byte("v")); !errors.Is(err, tc.want) {
			t.Errorf("PutNodeLocal(%d-byte key): %v, want %v", len(tc.key), err, tc.want)
		}
	}
	if err := e.PutNodeLocal("k", make([]byte, base.MaxValueSize+1)); !errors.Is(err, base.ErrValueTooLarge) {
		t.Errorf("PutNodeLocal(big value): %v", err)
	}
	// Through Apply (the replicated path) the same errors come back in the results.
	entries, wantErrs := rejectedEntries()
	res := mustApply(t, e, 3, entries...)
	for j, want := range wantErrs {
		if !errors.Is(res[j].Err, want) {
			t.Errorf("entry %d: %v, want %v", entries[j].Index, res[j].Err, want)
		}
	}
	// The limits themselves are accepted.
	maxKey := bytes.Repeat([]byte("k"), base.MaxKeySize)
	maxValue := bytes.Repeat([]byte("v"), base.MaxValueSize)
	res = mustApply(t, e, 3, entry(100, Command{Op: OpPut, Key: maxKey, Value: maxValue}))
	if res[0].Code != ResultApplied {
		t.Fatalf("max-size command: %+v", res[0])
	}
	if v, err := e.Get(maxKey); err != nil || !bytes.Equal(v.Data, maxValue) {
		t.Fatalf("Get(max key): %d bytes, %v", len(v.Data), err)
	}
}

func TestRangesAreIndependent(t *testing.T) {
	e := openMem(t)
	mustInit(t, e, 3, base.FullSpan)
	mustInit(t, e, 4, base.FullSpan)
	mustApply(t, e, 3, entry(5, put("a", "1")))
	mustApply(t, e, 4, entry(2, put("m", "1")))
	// Range 4's index 3 is not "already applied" just because range 3 is at 5.
	if res := mustApply(t, e, 4, entry(3, put("n", "1"))); res[0].Code != ResultApplied {
		t.Fatalf("range 4 entry 3: %+v", res[0])
	}
	for id, want := range map[base.RangeID]uint64{3: 5, 4: 3} {
		if got, _ := e.AppliedIndex(id); got != want {
			t.Errorf("range %d: applied %d, want %d", id, got, want)
		}
	}
}

func TestResultCodeString(t *testing.T) {
	for c, want := range map[ResultCode]string{ResultApplied: "applied", ResultRejected: "rejected", ResultSkipped: "skipped",
		ResultOutOfSpan: "out of span", ResultFrozen: "frozen", ResultConditionFailed: "condition failed", 0: "ResultCode(0)"} {
		if c.String() != want {
			t.Errorf("%d: %q", c, c.String())
		}
	}
}
