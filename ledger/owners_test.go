package ledger

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/bondkv/bondkv/internal/base"
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
