package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// MergeFunc names a built-in merge function of OpMergeValue. Merge functions run inside the
// state machine, so they are built in (the same on every node), never user code. The numbers
// are part of the replicated encoding.
type MergeFunc uint8

const (
	// MergeCounter adds the operand (8-byte big-endian two's complement) to the value (the same
	// encoding; absent = 0), wrapping on overflow.
	MergeCounter MergeFunc = 1
	// MergeSet adds the operand's elements to the value's: both are sets encoded by EncodeSet
	// (sorted, distinct, length-prefixed elements).
	MergeSet MergeFunc = 2
	// MergeLWW keeps whichever of value and operand has the larger timestamp (an 8-byte
	// big-endian prefix; ties go to the larger bytes), so concurrent writers converge whatever
	// order their writes apply in.
	MergeLWW MergeFunc = 3
)

func (f MergeFunc) known() bool { return f >= MergeCounter && f <= MergeLWW }

func (f MergeFunc) String() string {
	switch f {
	case MergeCounter:
		return "counter"
	case MergeSet:
		return "set"
	case MergeLWW:
		return "lww"
	}
	return fmt.Sprintf("MergeFunc(%d)", uint8(f))
}

// MergeValueCommand returns the command that merges operand into key's value with f.
func MergeValueCommand(key []byte, f MergeFunc, operand []byte) Command {
	v := make([]byte, 0, 1+len(operand))
	return Command{Op: OpMergeValue, Key: key, Value: append(append(v, byte(f)), operand...)}
}

// apply merges operand into the current value (found false: the key has no live value). ok
// false: the current value or the operand is not in f's encoding.
func (f MergeFunc) apply(cur []byte, found bool, operand []byte) ([]byte, bool) {
	switch f {
	case MergeCounter:
		if len(operand) != 8 || found && len(cur) != 8 {
			return nil, false
		}
		var n uint64
		if found {
			n = binary.BigEndian.Uint64(cur)
		}
		return binary.BigEndian.AppendUint64(nil, n+binary.BigEndian.Uint64(operand)), true
	case MergeSet:
		add, err := DecodeSet(operand)
		if err != nil {
			return nil, false
		}
		var have [][]byte
		if found {
			if have, err = DecodeSet(cur); err != nil {
				return nil, false
			}
		}
		return EncodeSet(append(have, add...)), true
	case MergeLWW:
		if len(operand) < 8 || found && len(cur) < 8 {
			return nil, false
		}
		if !found {
			return bytes.Clone(operand), true
		}
		ct, ot := binary.BigEndian.Uint64(cur), binary.BigEndian.Uint64(operand)
		if ot > ct || ot == ct && bytes.Compare(operand, cur) > 0 {
			return bytes.Clone(operand), true
		}
		return bytes.Clone(cur), true
	}
	return nil, false
}

// EncodeSet encodes a set: its elements sorted, without duplicates, each as uvarint length and
// bytes.
func EncodeSet(elems [][]byte) []byte {
	s := slices.Clone(elems)
	slices.SortFunc(s, bytes.Compare)
	s = slices.CompactFunc(s, bytes.Equal)
	var out []byte
	for _, e := range s {
		out = appendBytes(out, e)
	}
	if out == nil {
		out = []byte{}
	}
	return out
}

// DecodeSet decodes EncodeSet's output; elements out of order, repeated or truncated are
// corruption.
func DecodeSet(b []byte) ([][]byte, error) {
	d := decoder{b: b}
	var out [][]byte
	for d.err == nil && d.off < len(b) {
		e := d.bytes()
		if d.err == nil && len(out) > 0 && bytes.Compare(out[len(out)-1], e) >= 0 {
			return nil, corruptf("set elements out of order")
		}
		out = append(out, e)
	}
	return out, d.err
}

// readLive returns key's live value in r (found false: absent or deleted).
func readLive(r pebble.Reader, key []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(base.DataKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	rec, err := decodeRecord(v)
	if err != nil {
		return nil, false, fmt.Errorf("record of %q: %w", key, err)
	}
	if rec.Deleted {
		return nil, false, nil
	}
	return bytes.Clone(rec.Data), true, nil
}
