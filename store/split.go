package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/bondkv/bondkv/internal/base"
)

// SplitResult describes an applied OpSplit: range Left kept the keys below the split key and
// the new range Right owns the rest. RightState is the state the split defines for Right; it was
// stored unless Right already had a state on this node (then that one was left alone).
type SplitResult struct {
	Left       base.RangeID
	LeftState  RangeState
	Right      base.RangeID
	RightState RangeState
	// Members are the right range's initial voters, as the split command carried them.
	Members map[base.NodeID]string
}

// encodeSplitArgs encodes OpSplit's value:
//
//	new range id uint64 BE | count uvarint | count × (node id uint64 BE | addrLen uvarint | addr)
//
// with the members in ascending node order (the encoding is canonical).
func encodeSplitArgs(newID base.RangeID, members map[base.NodeID]string) []byte {
	ids := make([]base.NodeID, 0, len(members))
	for id := range members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := binary.BigEndian.AppendUint64(nil, uint64(newID))
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.AppendUvarint(b, uint64(len(members[id])))
		b = append(b, members[id]...)
	}
	return b
}

// decodeSplitArgs decodes encodeSplitArgs's output, rejecting anything non-canonical.
func decodeSplitArgs(b []byte) (base.RangeID, map[base.NodeID]string, error) {
	d := decoder{b: b}
	newID := d.uint64()
	n, err := d.uvarint()
	if err != nil {
		return 0, nil, err
	}
	if n > uint64(len(b))/9 {
		return 0, nil, corruptf("split: %d members in %d bytes", n, len(b))
	}
	members := make(map[base.NodeID]string, n)
	var prev uint64
	for i := uint64(0); i < n; i++ {
		id := d.uint64()
		addr := d.bytes()
		if d.err != nil {
			return 0, nil, d.err
		}
		if id == 0 || i > 0 && id <= prev {
			return 0, nil, corruptf("split: member ids not ascending and non-zero at %d", i)
		}
		prev = id
		members[base.NodeID(id)] = string(addr)
	}
	if d.err != nil {
		return 0, nil, d.err
	}
	if d.off != len(b) {
		return 0, nil, corruptf("split: %d trailing bytes", len(b)-d.off)
	}
	return base.RangeID(newID), members, nil
}

// split applies OpSplit to a.st (not frozen, with a state): the split key must be strictly
// inside the span and the new range another one.
func (a *applier) split(index uint64, c Command) Result {
	newID, members, err := decodeSplitArgs(c.Value)
	if err != nil { // validated before: cannot happen
		return a.result(ResultRejected, index, err)
	}
	sp := a.st.Span
	if bytes.Compare(sp.Start, c.Key) >= 0 || (sp.End != nil && bytes.Compare(c.Key, sp.End) >= 0) {
		return a.result(ResultRejected, index, fmt.Errorf("%w: split key %q not strictly inside the span %s", base.ErrInvalidRange, c.Key, sp))
	}
	if newID == a.id {
		return a.result(ResultRejected, index, fmt.Errorf("%w: split into the range itself (%d)", base.ErrInvalidRange, newID))
	}
	key := bytes.Clone(c.Key)
	left := RangeState{
		Span:        base.Span{Start: sp.Start, End: key},
		Generation:  a.st.Generation + 1,
		VersionBase: a.st.VersionBase,
	}
	// The right range's entries start again from index 1; its versions continue above every
	// version this range has written so far (at most VersionBase+index).
	right := RangeState{
		Span:        base.Span{Start: key, End: sp.End},
		Generation:  left.Generation,
		VersionBase: a.st.VersionBase + index,
	}
	if !a.otherHasState(newID) {
		a.setOther(newID, &right)
		// The new range's initial voters go with its state, in the same batch: a node that
		// crashes before it starts the new range's Raft group finds them at restart.
		if a.members == nil {
			a.members = make(map[base.RangeID][]byte)
		}
		a.members[newID] = bytes.Clone(c.Value)
	}
	a.st, a.stateDirty = left, true
	return Result{Code: ResultApplied, Split: &SplitResult{Left: a.id, LeftState: left.Clone(), Right: newID, RightState: right.Clone(), Members: members}}
}

// membersSuffix is the range-local key (r/<id>/members) holding the initial voters a split gave
// the range, as the split command encoded them. Snapshots carry it like any range-local key.
const membersSuffix = "members"

// SplitMembers returns the initial voters (replica ID → address, keyed as base.NodeID) that the
// split which created range id gave it; ok is false if range id was not created by a split on
// this node (or its state came from elsewhere).
func (e *Engine) SplitMembers(id base.RangeID) (members map[base.NodeID]string, ok bool, err error) {
	if err := e.enter(); err != nil {
		return nil, false, err
	}
	defer e.exit()
	v, closer, err := e.db.Get(base.RangeLocalKey(id, membersSuffix))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: range %d: split members: %w", id, err)
	}
	defer closer.Close()
	_, members, err = decodeSplitArgs(v)
	if err != nil {
		return nil, false, fmt.Errorf("store: range %d: split members: %w", id, err)
	}
	return members, true, nil
}
