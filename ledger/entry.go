package ledger

import (
	"bytes"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
)

// EntryVersion is the encoding version written by Encode; Decode accepts only it.
const EntryVersion = 1

// EntryType identifies the body of an entry. The values are part of the encoding.
type EntryType uint8

// Entry types.
const (
	TypeSplit EntryType = 1 + iota
	TypeMerge
	TypeReplicaAdd
	TypeReplicaRemove
	TypeLeaderMove
	TypeBind
	TypeUnbind
	TypePolicyChange
	TypeArchiveManifest
	TypeStateAnchor
	typeEnd
)

var typeNames = [...]string{"", "Split", "Merge", "ReplicaAdd", "ReplicaRemove", "LeaderMove",
	"Bind", "Unbind", "PolicyChange", "ArchiveManifest", "StateAnchor"}

func (t EntryType) String() string {
	if t > 0 && t < typeEnd {
		return typeNames[t]
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// Entry is one ledger record. Its canonical encoding is
//
//	u8 version | u8 type | u64 range | u64 generation | u64 time | [32] prev | body
//
// where body is the type's fields in declaration order.
type Entry struct {
	// Range is the range whose chain this entry extends; never zero.
	Range base.RangeID
	// Generation is the range descriptor's generation after the change.
	Generation uint64
	// Time is the proposer's wall clock in Unix nanoseconds (informational, not trusted).
	Time int64
	// Prev is the leaf hash of the previous entry of Range, zero for its first entry. The ledger
	// fills it in on append.
	Prev Hash
	// Body is the change; its type is the entry's type. Never nil.
	Body Body
}

// Type returns the type of e's body, or 0 if it has none.
func (e *Entry) Type() EntryType {
	if e.Body == nil {
		return 0
	}
	return e.Body.Type()
}

func (e *Entry) String() string {
	return fmt.Sprintf("%s %s gen %d", e.Type(), e.Range, e.Generation)
}

// Body is the type-specific part of an entry. The implementations are the types of this file.
type Body interface {
	Type() EntryType
	encode(*encoder)
	decode(*decoder)
	validate(rangeID base.RangeID) error
}

// Split: Range splits at Key; [Key, end) becomes range New.
type Split struct {
	Key []byte
	New base.RangeID
}

// Merge: Range absorbs its right neighbour Right, which ceases to exist.
type Merge struct {
	Right base.RangeID
}

// ReplicaAdd: a replica of Range is added on Node.
type ReplicaAdd struct {
	Node      base.NodeID
	Replica   uint64
	NonVoting bool
}

// ReplicaRemove: the replica of Range on Node is removed.
type ReplicaRemove struct {
	Node    base.NodeID
	Replica uint64
}

// LeaderMove: Range's leadership moves from From (zero if unknown) to To in Term.
type LeaderMove struct {
	From base.NodeID
	To   base.NodeID
	Term uint64
}

// Bind: actors A and B (A < B: a binding is unordered) are bound over the named state shards.
type Bind struct {
	A, B   string
	Shards []string // sorted, no duplicates
}

// Unbind: the binding of actors A and B (A < B) ends.
type Unbind struct {
	A, B string
}

// Consistency levels of a PolicyChange (DESIGN.md §5).
const (
	Strong   uint8 = 0
	Eventual uint8 = 1
)

// PolicyChange: Range's placement policy becomes the one described.
type PolicyChange struct {
	Replicas      uint32
	Consistency   uint8    // Strong or Eventual
	Localities    []string // sorted, no duplicates
	ArchiveData   uint8    // erasure-coded archive data shards; zero means no archive
	ArchiveParity uint8
}

// Fragment is one erasure-coded fragment of an archive.
type Fragment struct {
	Index uint16
	Node  base.NodeID
	Hash  Hash
}

// ArchiveManifest: Range's state as of StateVersion was archived as DataShards+ParityShards
// fragments, listed in index order (0 … n-1), each on a node with its hash.
type ArchiveManifest struct {
	StateVersion uint64
	Size         uint64
	DataShards   uint8
	ParityShards uint8
	Fragments    []Fragment
}

// StateAnchor: the hash of Range's state at AppliedIndex.
type StateAnchor struct {
	AppliedIndex uint64
	StateHash    Hash
}

func (*Split) Type() EntryType           { return TypeSplit }
func (*Merge) Type() EntryType           { return TypeMerge }
func (*ReplicaAdd) Type() EntryType      { return TypeReplicaAdd }
func (*ReplicaRemove) Type() EntryType   { return TypeReplicaRemove }
func (*LeaderMove) Type() EntryType      { return TypeLeaderMove }
func (*Bind) Type() EntryType            { return TypeBind }
func (*Unbind) Type() EntryType          { return TypeUnbind }
func (*PolicyChange) Type() EntryType    { return TypePolicyChange }
func (*ArchiveManifest) Type() EntryType { return TypeArchiveManifest }
func (*StateAnchor) Type() EntryType     { return TypeStateAnchor }

func newBody(t EntryType) Body {
	switch t {
	case TypeSplit:
		return &Split{}
	case TypeMerge:
		return &Merge{}
	case TypeReplicaAdd:
		return &ReplicaAdd{}
	case TypeReplicaRemove:
		return &ReplicaRemove{}
	case TypeLeaderMove:
		return &LeaderMove{}
	case TypeBind:
		return &Bind{}
	case TypeUnbind:
		return &Unbind{}
	case TypePolicyChange:
		return &PolicyChange{}
	case TypeArchiveManifest:
		return &ArchiveManifest{}
	case TypeStateAnchor:
		return &StateAnchor{}
	}
	return nil
}

func (b *Split) encode(e *encoder) { e.bytes(b.Key); e.u64(uint64(b.New)) }
func (b *Split) decode(d *decoder) { b.Key = d.bytes(); b.New = base.RangeID(d.u64()) }
func (b *Split) validate(r base.RangeID) error {
	if err := checkString("split key", string(b.Key)); err != nil {
		return err
	}
	if b.New == 0 || b.New == r {
		return fmt.Errorf("split: new range %d", b.New)
	}
	return nil
}

func (b *Merge) encode(e *encoder) { e.u64(uint64(b.Right)) }
func (b *Merge) decode(d *decoder) { b.Right = base.RangeID(d.u64()) }
func (b *Merge) validate(r base.RangeID) error {
	if b.Right == 0 || b.Right == r {
		return fmt.Errorf("merge: right range %d", b.Right)
	}
	return nil
}

func (b *ReplicaAdd) encode(e *encoder) {
	e.u64(uint64(b.Node))
	e.u64(b.Replica)
	e.boolean(b.NonVoting)
}
func (b *ReplicaAdd) decode(d *decoder) {
	b.Node = base.NodeID(d.u64())
	b.Replica = d.u64()
	b.NonVoting = d.boolean()
}
func (b *ReplicaAdd) validate(base.RangeID) error { return checkReplica(b.Node, b.Replica) }

func (b *ReplicaRemove) encode(e *encoder)           { e.u64(uint64(b.Node)); e.u64(b.Replica) }
func (b *ReplicaRemove) decode(d *decoder)           { b.Node = base.NodeID(d.u64()); b.Replica = d.u64() }
func (b *ReplicaRemove) validate(base.RangeID) error { return checkReplica(b.Node, b.Replica) }

func checkReplica(n base.NodeID, replica uint64) error {
	if n == 0 || replica == 0 {
		return fmt.Errorf("replica: node %d, replica %d: zero is invalid", n, replica)
	}
	return nil
}

func (b *LeaderMove) encode(e *encoder) { e.u64(uint64(b.From)); e.u64(uint64(b.To)); e.u64(b.Term) }
func (b *LeaderMove) decode(d *decoder) {
	b.From = base.NodeID(d.u64())
	b.To = base.NodeID(d.u64())
	b.Term = d.u64()
}
func (b *LeaderMove) validate(base.RangeID) error {
	if b.To == 0 || b.To == b.From {
		return fmt.Errorf("leader move: from %d to %d", b.From, b.To)
	}
	return nil
}

func (b *Bind) encode(e *encoder) { e.str(b.A); e.str(b.B); e.strings(b.Shards) }
func (b *Bind) decode(d *decoder) { b.A = d.str(); b.B = d.str(); b.Shards = d.strings() }
func (b *Bind) validate(base.RangeID) error {
	if err := checkPair(b.A, b.B); err != nil {
		return err
	}
	return checkStrings("bind shards", b.Shards)
}

func (b *Unbind) encode(e *encoder)           { e.str(b.A); e.str(b.B) }
func (b *Unbind) decode(d *decoder)           { b.A = d.str(); b.B = d.str() }
func (b *Unbind) validate(base.RangeID) error { return checkPair(b.A, b.B) }

func checkPair(a, b string) error {
	if err := checkString("actor", a); err != nil {
		return err
	}
	if err := checkString("actor", b); err != nil {
		return err
	}
	if a >= b {
		return fmt.Errorf("actors %q, %q: want A < B", a, b)
	}
	return nil
}

func (b *PolicyChange) encode(e *encoder) {
	e.u32(b.Replicas)
	e.u8(b.Consistency)
	e.strings(b.Localities)
	e.u8(b.ArchiveData)
	e.u8(b.ArchiveParity)
}
func (b *PolicyChange) decode(d *decoder) {
	b.Replicas = d.u32()
	b.Consistency = d.u8()
	b.Localities = d.strings()
	b.ArchiveData = d.u8()
	b.ArchiveParity = d.u8()
}
func (b *PolicyChange) validate(base.RangeID) error {
	if b.Replicas == 0 {
		return fmt.Errorf("policy: zero replicas")
	}
	if b.Consistency != Strong && b.Consistency != Eventual {
		return fmt.Errorf("policy: consistency %d", b.Consistency)
	}
	if b.ArchiveData == 0 && b.ArchiveParity != 0 {
		return fmt.Errorf("policy: archive parity %d without data shards", b.ArchiveParity)
	}
	return checkStrings("policy localities", b.Localities)
}

func (b *ArchiveManifest) encode(e *encoder) {
	e.u64(b.StateVersion)
	e.u64(b.Size)
	e.u8(b.DataShards)
	e.u8(b.ParityShards)
	e.u32(uint32(len(b.Fragments)))
	for _, f := range b.Fragments {
		e.u16(f.Index)
		e.u64(uint64(f.Node))
		e.hash(f.Hash)
	}
}
func (b *ArchiveManifest) decode(d *decoder) {
	b.StateVersion = d.u64()
	b.Size = d.u64()
	b.DataShards = d.u8()
	b.ParityShards = d.u8()
	n := d.count(2 + 8 + HashSize)
	if n > 0 {
		b.Fragments = make([]Fragment, n)
		for i := range b.Fragments {
			f := &b.Fragments[i]
			f.Index = d.u16()
			f.Node = base.NodeID(d.u64())
			f.Hash = d.hash()
		}
	}
}
func (b *ArchiveManifest) validate(base.RangeID) error {
	if b.DataShards == 0 {
		return fmt.Errorf("archive: zero data shards")
	}
	if n := int(b.DataShards) + int(b.ParityShards); len(b.Fragments) != n {
		return fmt.Errorf("archive: %d fragments, want %d", len(b.Fragments), n)
	}
	for i, f := range b.Fragments {
		if int(f.Index) != i {
			return fmt.Errorf("archive: fragment %d has index %d", i, f.Index)
		}
		if f.Node == 0 {
			return fmt.Errorf("archive: fragment %d on node 0", i)
		}
	}
	return nil
}

func (b *StateAnchor) encode(e *encoder)           { e.u64(b.AppliedIndex); e.hash(b.StateHash) }
func (b *StateAnchor) decode(d *decoder)           { b.AppliedIndex = d.u64(); b.StateHash = d.hash() }
func (b *StateAnchor) validate(base.RangeID) error { return nil }

func (e *Entry) validate() error {
	if e.Body == nil {
		return fmt.Errorf("no body")
	}
	if e.Range == 0 {
		return fmt.Errorf("range 0 is invalid")
	}
	return e.Body.validate(e.Range)
}

// Encode returns the canonical encoding of e, or an error wrapping ErrInvalidEntry if e has
// none.
func (e *Entry) Encode() ([]byte, error) {
	return e.AppendEncode(nil)
}

// AppendEncode appends the canonical encoding of e to dst.
func (e *Entry) AppendEncode(dst []byte) ([]byte, error) {
	if err := e.validate(); err != nil {
		return dst, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	enc := encoder{b: dst}
	enc.u8(EntryVersion)
	enc.u8(uint8(e.Body.Type()))
	enc.u64(uint64(e.Range))
	enc.u64(e.Generation)
	enc.u64(uint64(e.Time))
	enc.hash(e.Prev)
	e.Body.encode(&enc)
	return enc.b, nil
}

// DecodeEntry decodes a canonical entry. It rejects anything Encode would not produce, with an
// error wrapping base.ErrCorruption. The result does not alias b.
func DecodeEntry(b []byte) (Entry, error) {
	d := decoder{b: b}
	var e Entry
	if v := d.u8(); d.err == nil && v != EntryVersion {
		d.fail("unknown version %d", v)
	}
	t := EntryType(d.u8())
	if d.err == nil {
		if e.Body = newBody(t); e.Body == nil {
			d.fail("unknown entry type %d", t)
		}
	}
	e.Range = base.RangeID(d.u64())
	e.Generation = d.u64()
	e.Time = int64(d.u64())
	e.Prev = d.hash()
	if d.err == nil {
		e.Body.decode(&d)
	}
	if err := d.finish("entry"); err != nil {
		return Entry{}, err
	}
	if err := e.validate(); err != nil {
		return Entry{}, fmt.Errorf("ledger: decode entry: %v: %w", err, base.ErrCorruption)
	}
	return e, nil
}

// equalEntries reports whether a and b encode identically (both must be valid).
func equalEntries(a, b *Entry) bool {
	x, err1 := a.Encode()
	y, err2 := b.Encode()
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
