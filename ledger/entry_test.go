package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
)

// seedFromEnv returns a fixed seed, or LEDGER_SEED if set, and logs it so a failure can be
// replayed.
func testSeed(t testing.TB) uint64 {
	seed := uint64(0x1edc0de)
	if s := os.Getenv("LEDGER_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (set LEDGER_SEED to replay)", seed)
	return seed
}

func randHash(r *rand.Rand) (h Hash) {
	for i := range h {
		h[i] = byte(r.Uint32())
	}
	return h
}

func randString(r *rand.Rand, n int) string {
	b := make([]byte, 1+r.IntN(n))
	for i := range b {
		b[i] = 'a' + byte(r.IntN(26))
	}
	return string(b)
}

func randSet(r *rand.Rand, max int) []string {
	set := map[string]bool{}
	for range r.IntN(max + 1) {
		set[randString(r, 8)] = true
	}
	var out []string
	for s := range set {
		out = append(out, s)
	}
	sortStrings(out)
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j-1] > s[j]; j-- {
			s[j-1], s[j] = s[j], s[j-1]
		}
	}
}

// randEntry returns a random valid entry of a random type on one of nranges ranges.
func randEntry(r *rand.Rand, nranges int) Entry {
	rid := base.RangeID(3 + r.IntN(nranges))
	e := Entry{Range: rid, Generation: r.Uint64N(1000), Time: r.Int64()}
	if r.IntN(4) > 0 {
		e.Prev = randHash(r)
	}
	node := func() base.NodeID { return base.NodeID(1 + r.IntN(9)) }
	switch EntryType(1 + r.IntN(int(typeEnd)-1)) {
	case TypeSplit:
		e.Body = &Split{Key: []byte(randString(r, 40)), New: rid + 1000}
	case TypeMerge:
		e.Body = &Merge{Right: rid + 1}
	case TypeReplicaAdd:
		n := node()
		e.Body = &ReplicaAdd{Node: n, Replica: uint64(n), NonVoting: r.IntN(2) == 0}
	case TypeReplicaRemove:
		n := node()
		e.Body = &ReplicaRemove{Node: n, Replica: uint64(n)}
	case TypeLeaderMove:
		e.Body = &LeaderMove{From: base.NodeID(r.IntN(3)), To: base.NodeID(3 + r.IntN(3)), Term: r.Uint64N(100)}
	case TypeBind:
		a, b := "actor/"+randString(r, 10), "b/"+randString(r, 10)
		if a > b {
			a, b = b, a
		}
		e.Body = &Bind{A: a, B: b, Shards: randSet(r, 4)}
	case TypeUnbind:
		e.Body = &Unbind{A: "a" + randString(r, 5), B: "b" + randString(r, 5)}
	case TypePolicyChange:
		d := uint8(r.IntN(7))
		var p uint8
		if d > 0 {
			p = uint8(r.IntN(4))
		}
		e.Body = &PolicyChange{Replicas: uint32(1 + r.IntN(5)), Consistency: uint8(r.IntN(2)),
			Localities: randSet(r, 3), ArchiveData: d, ArchiveParity: p}
	case TypeArchiveManifest:
		m := &ArchiveManifest{StateVersion: r.Uint64(), Size: r.Uint64(), DataShards: uint8(1 + r.IntN(6)), ParityShards: uint8(r.IntN(4))}
		for i := range int(m.DataShards) + int(m.ParityShards) {
			m.Fragments = append(m.Fragments, Fragment{Index: uint16(i), Node: node(), Hash: randHash(r)})
		}
		e.Body = m
	case TypeStateAnchor:
		e.Body = &StateAnchor{AppliedIndex: r.Uint64(), StateHash: randHash(r)}
	}
	return e
}

// TestEntryRoundTrip is the round-trip property: for random valid entries, Decode(Encode(e))
// encodes to the same bytes, and every strict prefix and every extension is rejected.
func TestEntryRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 1))
	seen := map[EntryType]int{}
	for i := range 5000 {
		e := randEntry(r, 10)
		b, err := e.Encode()
		if err != nil {
			t.Fatalf("entry %d (%s): encode: %v", i, &e, err)
		}
		got, err := DecodeEntry(b)
		if err != nil {
			t.Fatalf("entry %d (%s): decode: %v", i, &e, err)
		}
		b2, err := got.Encode()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("entry %d (%s): re-encode differs (%v)\n%x\n%x", i, &e, err, b, b2)
		}
		seen[e.Type()]++
		if i%50 == 0 {
			for n := range len(b) {
				if _, err := DecodeEntry(b[:n]); !errors.Is(err, base.ErrCorruption) {
					t.Fatalf("entry %d: prefix of %d/%d bytes: err %v", i, n, len(b), err)
				}
			}
			if _, err := DecodeEntry(append(b, 0)); !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("entry %d: trailing byte accepted: %v", i, err)
			}
		}
	}
	if len(seen) != int(typeEnd)-1 {
		t.Fatalf("types covered: %v", seen)
	}
}

func TestEncodeRejectsNonCanonical(t *testing.T) {
	cases := []Entry{
		{Range: 3},
		{Range: 0, Body: &Merge{Right: 4}},
		{Range: 3, Body: &Merge{Right: 3}},
		{Range: 3, Body: &Split{Key: nil, New: 4}},
		{Range: 3, Body: &Split{Key: make([]byte, MaxStringSize+1), New: 4}},
		{Range: 3, Body: &Bind{A: "b", B: "a"}},
		{Range: 3, Body: &Bind{A: "a", B: "b", Shards: []string{"y", "x"}}},
		{Range: 3, Body: &Bind{A: "a", B: "b", Shards: []string{"x", "x"}}},
		{Range: 3, Body: &PolicyChange{Replicas: 3, Consistency: 2}},
		{Range: 3, Body: &PolicyChange{Replicas: 3, Localities: []string{"eu", "eu"}}},
		{Range: 3, Body: &ArchiveManifest{DataShards: 1, Fragments: []Fragment{{Index: 1, Node: 1}}}},
		{Range: 3, Body: &ReplicaAdd{Node: 0, Replica: 1}},
		{Range: 3, Body: &LeaderMove{From: 2, To: 2}},
	}
	for i, e := range cases {
		if _, err := e.Encode(); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("case %d: encode error %v, want ErrInvalidEntry", i, err)
		}
	}
}

// mustEncode encodes e or fails the test.
func mustEncode(t testing.TB, e Entry) []byte {
	t.Helper()
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRejects(t *testing.T) {
	bind := mustEncode(t, Entry{Range: 3, Body: &Bind{A: "a", B: "b", Shards: []string{"x", "y"}}})
	add := mustEncode(t, Entry{Range: 3, Body: &ReplicaAdd{Node: 1, Replica: 1}})
	mod := func(b []byte, f func([]byte)) []byte { c := bytes.Clone(b); f(c); return c }
	const hdr = 1 + 1 + 8 + 8 + 8 + HashSize
	cases := map[string][]byte{
		"empty":          nil,
		"version 0":      mod(add, func(b []byte) { b[0] = 0 }),
		"version 2":      mod(add, func(b []byte) { b[0] = 2 }),
		"type 0":         mod(add, func(b []byte) { b[1] = 0 }),
		"type 99":        mod(add, func(b []byte) { b[1] = 99 }),
		"range 0":        mod(add, func(b []byte) { clear(b[2:10]) }),
		"boolean 2":      mod(add, func(b []byte) { b[len(b)-1] = 2 }),
		"trailing":       append(bytes.Clone(add), 0),
		"truncated":      add[:len(add)-1],
		"huge string":    mod(bind, func(b []byte) { b[hdr] = 0xff }),
		"bad length":     mod(bind, func(b []byte) { b[hdr+3] = 2 }),
		"unsorted set":   mod(bind, func(b []byte) { b[len(b)-1], b[len(b)-6] = 'x', 'y' }),
		"duplicate set":  mod(bind, func(b []byte) { b[len(b)-1] = 'x' }),
		"huge set count": mod(bind, func(b []byte) { b[len(b)-14] = 0x7f }),
	}
	for name, b := range cases {
		if _, err := DecodeEntry(b); !errors.Is(err, base.ErrCorruption) {
			t.Errorf("%s: err %v, want ErrCorruption", name, err)
		}
	}
}

// FuzzDecodeEntry checks that DecodeEntry never panics and that whatever it accepts re-encodes
// to the same bytes. The seed corpus is testdata/fuzz/FuzzDecodeEntry (regenerate it with
// LEDGER_WRITE_CORPUS=1 go test -run TestWriteCorpus).
func FuzzDecodeEntry(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 20 {
		e := randEntry(r, 4)
		f.Add(mustEncode(f, e))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			if !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("error does not wrap ErrCorruption: %v", err)
			}
			return
		}
		b2, err := e.Encode()
		if err != nil {
			t.Fatalf("decoded entry does not encode: %v", err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("not canonical:\n%x\n%x", b, b2)
		}
	})
}

// TestWriteCorpus writes one encoded entry of each type to the fuzz seed corpus.
func TestWriteCorpus(t *testing.T) {
	if os.Getenv("LEDGER_WRITE_CORPUS") == "" {
		t.Skip("set LEDGER_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	r := rand.New(rand.NewPCG(1, 2))
	done := map[EntryType]bool{}
	for len(done) < int(typeEnd)-1 {
		e := randEntry(r, 4)
		if done[e.Type()] {
			continue
		}
		done[e.Type()] = true
		writeCorpus(t, "FuzzDecodeEntry", e.Type().String(), mustEncode(t, e))
	}
}

func writeCorpus(t *testing.T, fuzz, name string, b []byte) {
	dir := filepath.Join("testdata", "fuzz", fuzz)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
