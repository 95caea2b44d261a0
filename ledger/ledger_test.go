package ledger

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

var prefix = []byte("L/")

// buildLedger appends nblocks random blocks over a few ranges, checkpointing every third block.
func buildLedger(t *testing.T, r *rand.Rand, db *pebble.DB, nk *NodeKey, nblocks int) (*Ledger, []Entry) {
	t.Helper()
	l, err := Open(db, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var all []Entry
	for b := range nblocks {
		es := make([]Entry, 1+r.IntN(12))
		for i := range es {
			es[i] = randEntry(r, 4)
		}
		hdr, err := l.AppendBlock(es)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Number != uint64(b) || hdr.Root != l.Tree().Root() {
			t.Fatalf("header %+v", hdr)
		}
		all = append(all, es...)
		if b%3 == 2 {
			if _, err := l.Checkpoint(nk); err != nil {
				t.Fatal(err)
			}
		}
	}
	return l, all
}

func TestLedgerAppendVerify(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 4))
	dir := t.TempDir()
	nk, err := LoadOrCreateNodeKey(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, filepath.Join(dir, "db"))
	l, all := buildLedger(t, r, db, nk, 10)
	trusted := map[base.NodeID]ed25519.PublicKey{1: nk.Public()}
	if err := Verify(db, prefix, trusted); err != nil {
		t.Fatal(err)
	}
	// The chain: each entry links to the previous entry of its range.
	last := map[base.RangeID]Hash{}
	for i := range all {
		got, err := l.Entry(uint64(i))
		if err != nil || !equalEntries(&got, &all[i]) {
			t.Fatalf("entry %d: %v", i, err)
		}
		if got.Prev != last[got.Range] {
			t.Fatalf("entry %d: Prev %s, want %s", i, got.Prev, last[got.Range])
		}
		last[got.Range] = LeafHash(mustEncode(t, got))
		p, err := l.Tree().InclusionProof(uint64(i), l.Size())
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyInclusion(uint64(i), l.Size(), last[got.Range], p, l.Tree().Root()); err != nil {
			t.Fatal(err)
		}
	}
	// Reopen and keep appending: state (blocks, heads, tree) survives.
	l2, err := Open(db, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l2.AppendBlock([]Entry{randEntry(r, 4)}); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Checkpoint(nk); err != nil {
		t.Fatal(err)
	}
	if err := Verify(db, prefix, trusted); err != nil {
		t.Fatal(err)
	}
	// A different trusted key rejects the checkpoints.
	other, _ := LoadOrCreateNodeKey(t.TempDir(), 1)
	var ve *VerifyError
	if err := Verify(db, prefix, map[base.NodeID]ed25519.PublicKey{1: other.Public()}); !errors.As(err, &ve) || ve.Kind != ItemCheckpoint || ve.Index != 0 {
		t.Fatalf("untrusted key: %v", err)
	}
	// A bad block changes nothing.
	if _, err := l2.AppendBlock([]Entry{randEntry(r, 4), {Range: 0, Body: &Merge{Right: 1}}}); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("invalid entry: %v", err)
	}
	if err := Verify(db, prefix, trusted); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyNamesFlippedByte flips one byte at random positions of stored entries, headers and
// checkpoints; Verify must fail and name exactly the altered item.
func TestVerifyNamesFlippedByte(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 5))
	dir := t.TempDir()
	nk, err := LoadOrCreateNodeKey(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, filepath.Join(dir, "db"))
	buildLedger(t, r, db, nk, 9)
	trusted := map[base.NodeID]ed25519.PublicKey{1: nk.Public()}
	kinds := map[byte]string{'e': ItemEntry, 'b': ItemHeader, 'c': ItemCheckpoint, 'o': ItemOwners}
	var keys [][]byte
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: append(bytes.Clone(prefix), 0xff)})
	if err != nil {
		t.Fatal(err)
	}
	for it.First(); it.Valid(); it.Next() {
		if k := it.Key(); len(k) == len(prefix)+9 && kinds[k[len(prefix)]] != "" {
			keys = append(keys, bytes.Clone(k))
		}
	}
	it.Close()
	counts := map[string]int{}
	for range 400 {
		k := keys[r.IntN(len(keys))]
		v, closer, err := db.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		orig := bytes.Clone(v)
		v = bytes.Clone(v)
		closer.Close()
		pos := r.IntN(len(v))
		v[pos] ^= byte(1 + r.IntN(255))
		if err := db.Set(k, v, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		wantKind, wantIndex := kinds[k[len(prefix)]], beUint64(k[len(prefix)+1:])
		err = Verify(db, prefix, trusted)
		var ve *VerifyError
		if !errors.As(err, &ve) || !errors.Is(err, base.ErrCorruption) {
			t.Fatalf("flip of byte %d of %s %d: err %v", pos, wantKind, wantIndex, err)
		}
		if ve.Kind != wantKind || ve.Index != wantIndex {
			t.Fatalf("flip of byte %d of %s %d: reported %v", pos, wantKind, wantIndex, err)
		}
		counts[wantKind]++
		if err := db.Set(k, orig, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := Verify(db, prefix, trusted); err != nil {
		t.Fatal(err)
	}
	t.Logf("flips per kind: %v", counts)
	if len(counts) != len(kinds) {
		t.Fatalf("not every kind was flipped: %v", counts)
	}
}

func beUint64(b []byte) uint64 {
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	return n
}

// TestVerifyNamesDroppedEntry: a ledger rebuilt without one entry (tree, headers and
// checkpoints all recomputed and validly signed) is caught by the per-range chain, which names
// the range and the gap; deleting a stored entry is caught as missing.
func TestVerifyNamesDroppedEntry(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 6))
	dir := t.TempDir()
	nk, err := LoadOrCreateNodeKey(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, filepath.Join(dir, "db"))
	_, all := buildLedger(t, r, db, nk, 6)
	// Pick an entry whose range has a later entry.
	drop := -1
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[j].Range == all[i].Range {
				drop = i
				break
			}
		}
		if drop >= 0 {
			break
		}
	}
	if drop < 0 {
		t.Fatal("no range with two entries")
	}
	forged := openDB(t, filepath.Join(dir, "forged"))
	fl, err := Open(forged, prefix)
	if err != nil {
		t.Fatal(err)
	}
	rest := append(append([]Entry(nil), all[:drop]...), all[drop+1:]...)
	for len(rest) > 0 {
		n := min(len(rest), 5)
		if _, err := fl.appendBlock(append([]Entry(nil), rest[:n]...), false); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if _, err := fl.Checkpoint(nk); err != nil {
		t.Fatal(err)
	}
	err = Verify(forged, prefix, nil)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Kind != ItemEntry || !strings.Contains(err.Error(), all[drop].Range.String()+" chain gap") {
		t.Fatalf("dropped entry %d (%s): %v", drop, all[drop].Range, err)
	}
	t.Log(err)

	if err := db.Delete(key(prefix, 'e', uint64(drop)), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := Verify(db, prefix, nil); !errors.As(err, &ve) || ve.Kind != ItemEntry || ve.Index != uint64(drop) {
		t.Fatalf("deleted entry %d: %v", drop, err)
	}
}

func TestNodeKeyFile(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateNodeKey(dir, 7)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	k2, err := LoadOrCreateNodeKey(dir, 7)
	if err != nil || !k1.Public().Equal(k2.Public()) {
		t.Fatalf("reloaded key differs: %v", err)
	}
	os.Chmod(filepath.Join(dir, KeyFileName), 0o644)
	if _, err := LoadOrCreateNodeKey(dir, 7); err == nil {
		t.Fatal("world-readable key accepted")
	}
}
