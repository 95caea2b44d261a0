package ledger

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// TestOwnersTable follows one range through replica changes, leader moves, a split and a merge.
func TestOwnersTable(t *testing.T) {
	db := openDB(t, t.TempDir())
	l, err := Open(db, prefix)
	if err != nil {
		t.Fatal(err)
	}
	step := func(want []OwnerRow, es ...Entry) {
		t.Helper()
		if _, err := l.AppendBlock(es); err != nil {
			t.Fatal(err)
		}
		if got := l.Owners(); !reflect.DeepEqual(got, want) {
			t.Fatalf("owners\n got %v\nwant %v", got, want)
		}
	}
	rep := func(n base.NodeID) Replica { return Replica{Node: n, Replica: uint64(n)} }
	step([]OwnerRow{{Range: 3, Generation: 1, Index: 2, Replicas: []Replica{rep(1), rep(2), {Node: 3, Replica: 3, NonVoting: true}}}},
		Entry{Range: 3, Generation: 1, Body: &ReplicaAdd{Node: 2, Replica: 2}},
		Entry{Range: 3, Generation: 1, Body: &ReplicaAdd{Node: 1, Replica: 1}},
		Entry{Range: 3, Generation: 1, Body: &ReplicaAdd{Node: 3, Replica: 3, NonVoting: true}},
		// Entries that do not change ownership leave the table alone.
		Entry{Range: 3, Generation: 1, Body: &StateAnchor{AppliedIndex: 9}},
		Entry{Range: 5, Generation: 1, Body: &PolicyChange{Replicas: 3}})
	step([]OwnerRow{{Range: 3, Generation: 2, Index: 6, Leader: 2, Term: 7, Replicas: []Replica{rep(1), rep(2), rep(3)}}},
		Entry{Range: 3, Generation: 1, Body: &LeaderMove{To: 2, Term: 7}},
		Entry{Range: 3, Generation: 2, Body: &ReplicaAdd{Node: 3, Replica: 3}}) // promotes the learner
	// A split copies the replicas and leader to the new range.
	step([]OwnerRow{
		{Range: 3, Generation: 3, Index: 7, Leader: 2, Term: 7, Replicas: []Replica{rep(1), rep(2), rep(3)}},
		{Range: 4, Generation: 3, Index: 7, Leader: 2, Term: 7, Replicas: []Replica{rep(1), rep(2), rep(3)}},
	}, Entry{Range: 3, Generation: 3, Body: &Split{Key: []byte("m"), New: 4}})
	// Removing the leader's replica clears the leader; the other side of the split is unchanged.
	step([]OwnerRow{
		{Range: 3, Generation: 3, Index: 7, Leader: 2, Term: 7, Replicas: []Replica{rep(1), rep(2), rep(3)}},
		{Range: 4, Generation: 5, Index: 9, Term: 7, Replicas: []Replica{rep(1), rep(3), rep(4)}},
	},
		Entry{Range: 4, Generation: 4, Body: &ReplicaRemove{Node: 2, Replica: 2}},
		Entry{Range: 4, Generation: 5, Body: &ReplicaAdd{Node: 4, Replica: 4}})
	// A merge deletes the right range's row.
	step([]OwnerRow{{Range: 3, Generation: 6, Index: 10, Leader: 2, Term: 7, Replicas: []Replica{rep(1), rep(2), rep(3)}}},
		Entry{Range: 3, Generation: 6, Body: &Merge{Right: 4}})
}

// modelOwners is the owners table derived naively, for comparison.
func modelOwners(es []Entry) []OwnerRow {
	type row struct {
		OwnerRow
		reps map[base.NodeID]Replica
	}
	m := map[base.RangeID]*row{}
	for i, e := range es {
		switch e.Body.(type) {
		case *Split, *Merge, *ReplicaAdd, *ReplicaRemove, *LeaderMove:
		default:
			continue
		}
		r := m[e.Range]
		if r == nil {
			r = &row{OwnerRow: OwnerRow{Range: e.Range}, reps: map[base.NodeID]Replica{}}
			m[e.Range] = r
		}
		r.Generation, r.Index = e.Generation, uint64(i)
		switch b := e.Body.(type) {
		case *Split:
			n := &row{OwnerRow: r.OwnerRow, reps: map[base.NodeID]Replica{}}
			n.Range = b.New
			for k, v := range r.reps {
				n.reps[k] = v
			}
			m[b.New] = n
		case *Merge:
			delete(m, b.Right)
		case *ReplicaAdd:
			r.reps[b.Node] = Replica{b.Node, b.Replica, b.NonVoting}
		case *ReplicaRemove:
			delete(r.reps, b.Node)
			if r.Leader == b.Node {
				r.Leader = 0
			}
		case *LeaderMove:
			r.Leader, r.Term = b.To, b.Term
		}
	}
	var out []OwnerRow
	for _, r := range m {
		o := r.OwnerRow
		o.Replicas = nil
		for _, p := range r.reps {
			o.Replicas = append(o.Replicas, p)
		}
		slices.SortFunc(o.Replicas, func(a, b Replica) int { return cmpNode(a.Node, b.Node) })
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b OwnerRow) int { return cmpNode(base.NodeID(a.Range), base.NodeID(b.Range)) })
	return out
}

// ownersEntry is a random entry that mostly changes ownership, over ranges 3…3+n-1.
func ownersEntry(r *rand.Rand, n int) Entry {
	rid := base.RangeID(3 + r.IntN(n))
	e := Entry{Range: rid, Generation: r.Uint64N(100)}
	node := base.NodeID(1 + r.IntN(6))
	switch r.IntN(7) {
	case 0:
		e.Body = &Split{Key: []byte("k"), New: base.RangeID(3 + r.IntN(n))}
		if e.Body.(*Split).New == rid {
			e.Body.(*Split).New = rid + 1
		}
	case 1:
		e.Body = &Merge{Right: rid + 1}
	case 2, 3:
		e.Body = &ReplicaAdd{Node: node, Replica: 1 + r.Uint64N(3), NonVoting: r.IntN(4) == 0}
	case 4:
		e.Body = &ReplicaRemove{Node: node, Replica: 1}
	case 5:
		e.Body = &LeaderMove{To: node, Term: r.Uint64N(50)}
	default:
		return randEntry(r, n)
	}
	return e
}

// TestOwnersMatchModel appends random ownership entries and compares the table with a naive
// model, before and after reopening.
func TestOwnersMatchModel(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 7))
	db := openDB(t, t.TempDir())
	l, err := Open(db, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var all []Entry
	for range 40 {
		es := make([]Entry, 1+r.IntN(8))
		for i := range es {
			es[i] = ownersEntry(r, 12)
		}
		if _, err := l.AppendBlock(es); err != nil {
			t.Fatal(err)
		}
		all = append(all, es...)
		if got, want := l.Owners(), modelOwners(all); !reflect.DeepEqual(got, want) {
			t.Fatalf("owners\n got %v\nwant %v", got, want)
		}
	}
	l2, err := Open(db, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l2.Owners(), modelOwners(all); !reflect.DeepEqual(got, want) {
		t.Fatalf("owners after reopen\n got %v\nwant %v", got, want)
	}
}

func TestOwnerRowRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 9))
	var es []Entry
	for range 300 {
		es = append(es, ownersEntry(r, 20))
	}
	for i, row := range modelOwners(es) {
		enc := row.Encode()
		dec, err := DecodeOwnerRow(enc)
		if err != nil || !reflect.DeepEqual(dec, row) {
			t.Fatalf("row %d: %v", i, err)
		}
		for n := range len(enc) {
			if _, err := DecodeOwnerRow(enc[:n]); !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("row %d: prefix of %d/%d bytes: %v", i, n, len(enc), err)
			}
		}
		if len(row.Replicas) > 1 {
			swapped := row
			swapped.Replicas = slices.Clone(row.Replicas)
			swapped.Replicas[0], swapped.Replicas[1] = swapped.Replicas[1], swapped.Replicas[0]
			if _, err := DecodeOwnerRow(swapped.Encode()); !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("row %d: unsorted replicas accepted: %v", i, err)
			}
		}
	}
}

// TestOwnerProofs checks every row of every checkpoint's owners table against a naive model,
// proves and verifies it, and checks that forged rows, other checkpoints and other keys fail.
// Old checkpoints keep proving the owners as of their time.
func TestOwnerProofs(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 7))
	dir := t.TempDir()
	nk, err := LoadOrCreateNodeKey(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadOrCreateNodeKey(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, filepath.Join(dir, "db"))
	l, err := Open(db, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var all []Entry
	var tables [][]OwnerRow // per checkpoint, from the model
	for b := range 40 {
		es := make([]Entry, 1+r.IntN(8))
		for i := range es {
			es[i] = ownersEntry(r, 12)
		}
		if _, err := l.AppendBlock(es); err != nil {
			t.Fatal(err)
		}
		all = append(all, es...)
		if b%4 == 2 { // the last block is not checkpointed: Open replays it after the table
			if _, err := l.Checkpoint(nk); err != nil {
				t.Fatal(err)
			}
			tables = append(tables, modelOwners(all))
		}
	}
	if got, want := l.Owners(), modelOwners(all); !reflect.DeepEqual(got, want) {
		t.Fatalf("owners\n got %v\nwant %v", got, want)
	}
	l2, err := Open(db, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l2.Owners(), modelOwners(all); !reflect.DeepEqual(got, want) {
		t.Fatalf("owners after reopen\n got %v\nwant %v", got, want)
	}
	if err := Verify(db, prefix, map[base.NodeID]ed25519.PublicKey{1: nk.Public()}); err != nil {
		t.Fatal(err)
	}
	proved, forged := 0, 0
	for seq, table := range tables {
		present := map[base.RangeID]bool{}
		for _, want := range table {
			present[want.Range] = true
			row, p, c, err := l.ProveOwner(want.Range, uint64(seq))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(row, want) {
				t.Fatalf("checkpoint %d: row\n got %v\nwant %v", seq, &row, &want)
			}
			if err := VerifyOwner(row, p, c, nk.Public()); err != nil {
				t.Fatalf("checkpoint %d: %v", seq, err)
			}
			proved++
			if err := VerifyOwner(row, p, c, other.Public()); err == nil {
				t.Fatalf("checkpoint %d: untrusted key accepted", seq)
			}
			bad := row
			bad.Leader++
			if err := VerifyOwner(bad, p, c, nk.Public()); err == nil {
				t.Fatalf("checkpoint %d: forged leader accepted", seq)
			}
			bad = row
			bad.Replicas = append(slices.Clone(row.Replicas), Replica{Node: 99, Replica: 1})
			if err := VerifyOwner(bad, p, c, nk.Public()); err == nil {
				t.Fatalf("checkpoint %d: forged replica set accepted", seq)
			}
			cc := c
			cc.OwnersRoot[0] ^= 1
			if err := VerifyOwner(row, p, cc, nk.Public()); err == nil {
				t.Fatalf("checkpoint %d: altered checkpoint accepted", seq)
			}
			// The same proof against another checkpoint fails unless the row did not change.
			if seq > 0 {
				prev, err := l.CheckpointAt(uint64(seq - 1))
				if err != nil {
					t.Fatal(err)
				}
				err = VerifyOwner(row, p, prev, nk.Public())
				if !slices.ContainsFunc(tables[seq-1], func(o OwnerRow) bool { return reflect.DeepEqual(o, row) }) {
					if err == nil {
						t.Fatalf("checkpoint %d: row %v accepted against checkpoint %d", seq, &row, seq-1)
					}
					forged++
				}
			}
		}
		for id := base.RangeID(3); id < 3+12; id++ {
			if _, _, _, err := l.ProveOwner(id, uint64(seq)); present[id] != (err == nil) || (err != nil && !errors.Is(err, base.ErrNotFound)) {
				t.Fatalf("checkpoint %d: %s present %v, prove: %v", seq, id, present[id], err)
			}
		}
	}
	if _, _, _, err := l.ProveOwner(3, uint64(len(tables))); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("missing checkpoint: %v", err)
	}
	t.Logf("%d rows proved over %d checkpoints; %d changed rows rejected by the previous checkpoint", proved, len(tables), forged)
	if forged == 0 {
		t.Fatal("no row changed between checkpoints")
	}
}

// TestVerifyNamesOwners: a checkpoint signed over a wrong owners table, and a stored table that
// differs from the replay, are named.
func TestVerifyNamesOwners(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 8))
	dir := t.TempDir()
	nk, err := LoadOrCreateNodeKey(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, filepath.Join(dir, "db"))
	l, err := Open(db, prefix)
	if err != nil {
		t.Fatal(err)
	}
	for b := range 6 {
		es := make([]Entry, 1+r.IntN(8))
		for i := range es {
			es[i] = ownersEntry(r, 6)
		}
		if _, err := l.AppendBlock(es); err != nil {
			t.Fatal(err)
		}
		if b%2 == 1 {
			if _, err := l.Checkpoint(nk); err != nil {
				t.Fatal(err)
			}
		}
	}
	c, err := l.CheckpointAt(1)
	if err != nil {
		t.Fatal(err)
	}
	orig := c.Encode()
	var ve *VerifyError
	// A validly signed checkpoint whose owners root is not the replay's.
	c.OwnersRoot[3] ^= 0x10
	nk.sign(&c)
	if err := db.Set(key(prefix, 'c', 1), c.Encode(), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := Verify(db, prefix, nil); !errors.As(err, &ve) || ve.Kind != ItemCheckpoint || ve.Index != 1 || !strings.Contains(err.Error(), "owners") {
		t.Fatalf("signed wrong owners root: %v", err)
	}
	if err := db.Set(key(prefix, 'c', 1), orig, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	// A stored table deleted, or stored without a checkpoint.
	raw, closer, err := db.Get(key(prefix, 'o', 2))
	if err != nil {
		t.Fatal(err)
	}
	tbl := slices.Clone(raw)
	closer.Close()
	if err := db.Delete(key(prefix, 'o', 2), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := Verify(db, prefix, nil); !errors.As(err, &ve) || ve.Kind != ItemOwners || ve.Index != 2 {
		t.Fatalf("deleted owners table: %v", err)
	}
	if err := db.Set(key(prefix, 'o', 2), tbl, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := db.Set(key(prefix, 'o', 3), tbl, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := Verify(db, prefix, nil); !errors.As(err, &ve) || ve.Kind != ItemOwners || ve.Index != 3 {
		t.Fatalf("extra owners table: %v", err)
	}
}

// TestOwnersTableRoundTrip: a stored table decodes to the same rows and leaves; truncations and
// unsorted rows are rejected.
func TestOwnersTableRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 10))
	var es []Entry
	for range 300 {
		es = append(es, ownersEntry(r, 20))
	}
	tbl := newOwnersTable(modelOwners(es))
	got, err := decodeOwnersTable(tbl.enc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.rows, tbl.rows) || !reflect.DeepEqual(got.leaves, tbl.leaves) {
		t.Fatal("decoded table differs")
	}
	for n := range len(tbl.enc) {
		if _, err := decodeOwnersTable(tbl.enc[:n]); !errors.Is(err, base.ErrCorruption) {
			t.Fatalf("prefix of %d/%d bytes: %v", n, len(tbl.enc), err)
		}
	}
	if _, err := decodeOwnersTable(append(slices.Clone(tbl.enc), 0)); !errors.Is(err, base.ErrCorruption) {
		t.Fatalf("trailing byte accepted: %v", err)
	}
	swapped := newOwnersTable([]OwnerRow{tbl.rows[1], tbl.rows[0]})
	if _, err := decodeOwnersTable(swapped.enc); !errors.Is(err, base.ErrCorruption) {
		t.Fatalf("unsorted rows accepted: %v", err)
	}
}

// FuzzDecodeOwnersTable checks that decodeOwnersTable and DecodeOwnerRow never panic and that
// whatever they accept re-encodes to the same bytes.
func FuzzDecodeOwnersTable(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 11))
	var es []Entry
	for range 60 {
		es = append(es, ownersEntry(r, 8))
	}
	rows := modelOwners(es)
	f.Add(newOwnersTable(rows).enc)
	f.Add(newOwnersTable(nil).enc)
	for _, row := range rows[:3] {
		f.Add(row.Encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if tbl, err := decodeOwnersTable(b); err == nil {
			if enc := newOwnersTable(tbl.rows).enc; !bytes.Equal(enc, b) {
				t.Fatalf("table re-encodes differently\n%x\n%x", b, enc)
			}
		}
		if row, err := DecodeOwnerRow(b); err == nil {
			if enc := row.Encode(); !bytes.Equal(enc, b) {
				t.Fatalf("row re-encodes differently\n%x\n%x", b, enc)
			}
		}
	})
}
