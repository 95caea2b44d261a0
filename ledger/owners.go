package ledger

import (
	"fmt"
	"slices"

	"github.com/bondkv/bondkv/internal/base"
)

// OwnerVersion is the encoding version of an owners row and of a stored owners table.
const OwnerVersion = 1

// Replica is one member of a range's replica set in an owners row.
type Replica struct {
	Node      base.NodeID
	Replica   uint64
	NonVoting bool
}

// OwnerRow is the owners table's row of one range: who owns it after the ledger's entries so
// far (see the package documentation for how entries change it). Its canonical encoding is
//
//	u8 version | u64 range | u64 generation | u64 index | u64 leader | u64 term |
//	u32 n | n × (u64 node | u64 replica | u8 non-voting)
//
// with the replicas in strictly increasing node order.
type OwnerRow struct {
	Range base.RangeID
	// Generation is the Generation of the last entry that changed the row.
	Generation uint64
	// Index is the ledger index of the last entry that changed the row; its inclusion in the
	// entry tree can be proved separately.
	Index uint64
	// Leader is the last recorded leader (LeaderMove.To, inherited on split), zero if unknown or
	// if that node's replica was removed since. Term is the term of the last LeaderMove.
	Leader base.NodeID
	Term   uint64
	// Replicas is the replica set, sorted by node, one replica per node.
	Replicas []Replica
}

const (
	minRowSize     = 1 + 5*8 + 4
	replicaRowSize = 8 + 8 + 1
)

func (r *OwnerRow) String() string {
	return fmt.Sprintf("%s gen %d leader %s term %d replicas %v", r.Range, r.Generation, r.Leader, r.Term, r.Replicas)
}

// Encode returns the canonical encoding of r, the leaf of the owners tree.
func (r *OwnerRow) Encode() []byte {
	e := encoder{b: make([]byte, 0, minRowSize+replicaRowSize*len(r.Replicas))}
	r.encode(&e)
	return e.b
}

func (r *OwnerRow) encode(e *encoder) {
	e.u8(OwnerVersion)
	e.u64(uint64(r.Range))
	e.u64(r.Generation)
	e.u64(r.Index)
	e.u64(uint64(r.Leader))
	e.u64(r.Term)
	e.u32(uint32(len(r.Replicas)))
	for _, p := range r.Replicas {
		e.u64(uint64(p.Node))
		e.u64(p.Replica)
		e.boolean(p.NonVoting)
	}
}

func (r *OwnerRow) decode(d *decoder) {
	if v := d.u8(); d.err == nil && v != OwnerVersion {
		d.fail("unknown owners version %d", v)
	}
	r.Range = base.RangeID(d.u64())
	if d.err == nil && r.Range == 0 {
		d.fail("range 0")
	}
	r.Generation = d.u64()
	r.Index = d.u64()
	r.Leader = base.NodeID(d.u64())
	r.Term = d.u64()
	n := d.count(replicaRowSize)
	if n > 0 {
		r.Replicas = make([]Replica, n)
	}
	for i := range r.Replicas {
		p := &r.Replicas[i]
		p.Node = base.NodeID(d.u64())
		p.Replica = d.u64()
		p.NonVoting = d.boolean()
		if d.err == nil && (p.Node == 0 || p.Replica == 0) {
			d.fail("replica %d: node %d, replica %d", i, p.Node, p.Replica)
		}
		if d.err == nil && i > 0 && r.Replicas[i-1].Node >= p.Node {
			d.fail("replicas not in strictly increasing node order at %d", i)
		}
	}
}

// DecodeOwnerRow decodes a canonical owners row; errors wrap base.ErrCorruption.
func DecodeOwnerRow(b []byte) (OwnerRow, error) {
	d := decoder{b: b}
	var r OwnerRow
	r.decode(&d)
	if err := d.finish("owners row"); err != nil {
		return OwnerRow{}, err
	}
	return r, nil
}

// owners is an owners table: range → row. Rows are values whose Replicas are never modified in
// place (every change builds a new slice), so a row may share its slice with another.
type owners map[base.RangeID]OwnerRow

// ownersDelta collects the changes of one block over a table, so a failed append leaves the
// table as it was.
type ownersDelta struct {
	base    owners
	changed map[base.RangeID]*OwnerRow // nil: deleted
}

func newOwnersDelta(o owners) *ownersDelta {
	return &ownersDelta{base: o, changed: map[base.RangeID]*OwnerRow{}}
}

func (d *ownersDelta) get(id base.RangeID) (OwnerRow, bool) {
	if r, ok := d.changed[id]; ok {
		if r == nil {
			return OwnerRow{}, false
		}
		return *r, true
	}
	r, ok := d.base[id]
	return r, ok
}

func (d *ownersDelta) put(r OwnerRow)      { d.changed[r.Range] = &r }
func (d *ownersDelta) del(id base.RangeID) { d.changed[id] = nil }

func (d *ownersDelta) commit() {
	for id, r := range d.changed {
		if r == nil {
			delete(d.base, id)
		} else {
			d.base[id] = *r
		}
	}
}

// apply records the effect of entry e, at ledger index idx, on the table. It is total: every
// entry that decodes has an effect (possibly none), so any ledger has an owners table.
func (d *ownersDelta) apply(e *Entry, idx uint64) {
	switch e.Body.(type) {
	case *Split, *Merge, *ReplicaAdd, *ReplicaRemove, *LeaderMove:
	default:
		return
	}
	row, ok := d.get(e.Range)
	if !ok {
		row = OwnerRow{Range: e.Range}
	}
	row.Generation, row.Index = e.Generation, idx
	switch b := e.Body.(type) {
	case *Split:
		right := row
		right.Range = b.New
		d.put(right)
	case *Merge:
		d.del(b.Right)
	case *ReplicaAdd:
		row.Replicas = withReplica(row.Replicas, Replica{Node: b.Node, Replica: b.Replica, NonVoting: b.NonVoting})
	case *ReplicaRemove:
		row.Replicas = withoutNode(row.Replicas, b.Node)
		if row.Leader == b.Node {
			row.Leader = 0
		}
	case *LeaderMove:
		row.Leader, row.Term = b.To, b.Term
	}
	d.put(row)
}

// withReplica returns a new slice: set with p added, or replacing the replica on p.Node.
func withReplica(set []Replica, p Replica) []Replica {
	i, found := slices.BinarySearchFunc(set, p.Node, func(r Replica, n base.NodeID) int { return cmpNode(r.Node, n) })
	out := make([]Replica, 0, len(set)+1)
	out = append(append(out, set[:i]...), p)
	if found {
		i++
	}
	return append(out, set[i:]...)
}

// withoutNode returns set without the replica on node (a new slice if it changes; nil if
// empty, as a decoded row has).
func withoutNode(set []Replica, node base.NodeID) []Replica {
	i, found := slices.BinarySearchFunc(set, node, func(r Replica, n base.NodeID) int { return cmpNode(r.Node, n) })
	if !found {
		return set
	}
	if len(set) == 1 {
		return nil
	}
	out := make([]Replica, 0, len(set)-1)
	return append(append(out, set[:i]...), set[i+1:]...)
}

func cmpNode(a, b base.NodeID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sorted returns the rows ordered by range ID.
func (o owners) sorted() []OwnerRow {
	rows := make([]OwnerRow, 0, len(o))
	for _, r := range o {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b OwnerRow) int {
		switch {
		case a.Range < b.Range:
			return -1
		case a.Range > b.Range:
			return 1
		}
		return 0
	})
	return rows
}
