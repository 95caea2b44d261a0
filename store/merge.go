package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
)

// MergeArgs describe the right range an OpMerge absorbs into its left neighbour. The merge
// protocol freezes the right range first and reads these from its state.
type MergeArgs struct {
	Right           base.RangeID
	RightSpan       base.Span
	RightGeneration uint64
	// RightVersion is the highest version the right range can have written: its VersionBase
	// plus its applied index at the freeze (Engine.RangeVersion).
	RightVersion uint64
}

// MergeResult describes an applied OpMerge: range Left now owns Right's span too, and Right's
// state key is gone from this node (its other range-local keys stay until DestroyRange).
type MergeResult struct {
	Left      base.RangeID
	LeftState RangeState
	Right     base.RangeID
}

// The encoding of MergeArgs (the Value of an OpMerge):
//
//	version byte (1) | right uint64 BE | right generation uint64 BE | right version uint64 BE | right span
const mergeArgsVersion = 1

func encodeMergeArgs(a MergeArgs) []byte {
	b := make([]byte, 0, 1+24+2*binary.MaxVarintLen64+len(a.RightSpan.Start)+len(a.RightSpan.End)+1)
	b = append(b, mergeArgsVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Right))
	b = binary.BigEndian.AppendUint64(b, a.RightGeneration)
	b = binary.BigEndian.AppendUint64(b, a.RightVersion)
	return appendSpan(b, a.RightSpan)
}

// decodeMergeArgs decodes an OpMerge's value; the span aliases b. Anything non-canonical wraps
// base.ErrCorruption.
func decodeMergeArgs(b []byte) (MergeArgs, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != mergeArgsVersion {
		return MergeArgs{}, corruptf("merge args: unknown version %d", v)
	}
	var a MergeArgs
	a.Right = base.RangeID(d.uint64())
	a.RightGeneration = d.uint64()
	a.RightVersion = d.uint64()
	a.RightSpan = d.span()
	switch {
	case d.err != nil:
		return MergeArgs{}, fmt.Errorf("merge args: %w", d.err)
	case d.off != len(b):
		return MergeArgs{}, corruptf("merge args: %d trailing bytes", len(b)-d.off)
	}
	return a, nil
}

// validate checks what does not depend on the left range: a right range id and a non-empty
// right span within the key limits.
func (a MergeArgs) validate() error {
	if a.Right == 0 {
		return fmt.Errorf("store: %w: merge of range 0", base.ErrInvalidRange)
	}
	if !a.RightSpan.Valid() {
		return fmt.Errorf("store: %w: merge of the empty span %s", base.ErrInvalidRange, a.RightSpan)
	}
	if err := base.CheckKey(a.RightSpan.Start); err != nil && len(a.RightSpan.Start) != 0 {
		return fmt.Errorf("store: merge: right span start: %w", err)
	}
	if err := base.CheckKey(a.RightSpan.End); err != nil && a.RightSpan.End != nil {
		return fmt.Errorf("store: merge: right span end: %w", err)
	}
	return nil
}

// merge applies OpMerge to a.st (not frozen, with a state): the right range must start where
// this one ends.
func (a *applier) merge(index uint64, c Command) Result {
	args, err := decodeMergeArgs(c.Value)
	if err != nil { // ValidateCommands decoded it already
		return a.result(ResultRejected, index, err)
	}
	sp := a.st.Span
	switch {
	case args.Right == a.id:
		return a.result(ResultRejected, index, fmt.Errorf("%w: merge of the range into itself", base.ErrInvalidRange))
	case sp.Empty() || sp.End == nil || !bytes.Equal(args.RightSpan.Start, sp.End):
		return a.result(ResultRejected, index, fmt.Errorf("%w: range %d (%s) is not the right neighbour of %s",
			base.ErrInvalidRange, args.Right, args.RightSpan, sp))
	}
	st := RangeState{
		Span:        base.Span{Start: sp.Start, End: cloneSpan(args.RightSpan).End},
		Generation:  max(a.st.Generation, args.RightGeneration) + 1,
		VersionBase: a.st.VersionBase,
	}
	// Entries after this one (index+1 on) must write versions above RightVersion.
	if args.RightVersion > index && args.RightVersion-index > st.VersionBase {
		st.VersionBase = args.RightVersion - index
	}
	a.setOther(args.Right, nil)
	a.st, a.stateDirty = st, true
	return Result{Code: ResultApplied, Merge: &MergeResult{Left: a.id, LeftState: st.Clone(), Right: args.Right}}
}
