package base

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Key prefixes of the storage layout.
const (
	DataPrefix      = "d/"
	IntentPrefix    = "i/"
	RangeLocalByte  = "r/"
	NodeLocalPrefix = "x/"
)

// Span is a half-open span [Start, End) of user keys. A nil End is unbounded; a non-nil empty
// End is a bound below every key (see NoSpan).
type Span struct {
	Start, End []byte
}

// FullSpan covers every user key.
var FullSpan = Span{}

// NoSpan contains no user key: it is the span of a system range (the meta range), whose state
// lives only in range-local keys. Every span with End <= Start (End not nil) is empty like it,
// but NoSpan is the one canonical form stored and streamed.
var NoSpan = Span{Start: []byte{}, End: []byte{}}

// Contains reports whether the user key k is inside the span.
func (s Span) Contains(k []byte) bool {
	return bytes.Compare(k, s.Start) >= 0 && (s.End == nil || bytes.Compare(k, s.End) < 0)
}

// Covers reports whether sub lies inside s (s non-empty).
func (s Span) Covers(sub Span) bool {
	if s.Empty() || bytes.Compare(sub.Start, s.Start) < 0 {
		return false
	}
	return s.End == nil || sub.End != nil && bytes.Compare(sub.End, s.End) <= 0
}

// Valid reports whether Start < End (or End is unbounded): the span contains at least one key.
func (s Span) Valid() bool { return s.End == nil || bytes.Compare(s.Start, s.End) < 0 }

// Empty reports whether the span contains no user key (End is bounded and End <= Start). It is
// !Valid(): NoSpan is empty, and so is an inverted span.
func (s Span) Empty() bool { return !s.Valid() }

// Overlaps reports whether some user key is in both spans. An empty span overlaps nothing.
func (s Span) Overlaps(o Span) bool {
	if s.Empty() || o.Empty() {
		return false
	}
	return (o.End == nil || bytes.Compare(s.Start, o.End) < 0) && (s.End == nil || bytes.Compare(o.Start, s.End) < 0)
}

// Equal reports whether the spans have the same bounds. An unbounded End (nil) differs from
// every bounded one, the empty one included; a nil Start equals an empty Start.
func (s Span) Equal(o Span) bool {
	return bytes.Equal(s.Start, o.Start) && (s.End == nil) == (o.End == nil) && bytes.Equal(s.End, o.End)
}

// String formats the span as ["start", "end"), with +inf for an unbounded End.
func (s Span) String() string {
	if s.End == nil {
		return fmt.Sprintf("[%q, +inf)", s.Start)
	}
	return fmt.Sprintf("[%q, %q)", s.Start, s.End)
}

func prefixed(prefix string, k []byte) []byte {
	out := make([]byte, 0, len(prefix)+len(k))
	return append(append(out, prefix...), k...)
}

// prefixEnd returns the first key after every key with the given prefix.
func prefixEnd(prefix string) []byte {
	out := []byte(prefix)
	out[len(out)-1]++
	return out
}

// DataKey is the engine key of a user key's value record.
func DataKey(user []byte) []byte { return prefixed(DataPrefix, user) }

// IntentKey is the engine key of a user key's intent.
func IntentKey(user []byte) []byte { return prefixed(IntentPrefix, user) }

// UserKey strips a data or intent prefix; ok is false if k has neither.
func UserKey(k []byte) (user []byte, ok bool) {
	if bytes.HasPrefix(k, []byte(DataPrefix)) || bytes.HasPrefix(k, []byte(IntentPrefix)) {
		return k[2:], true
	}
	return nil, false
}

// DataSpan maps a user span to engine keys [start, end) of its value records. An empty span maps
// to an empty engine span (start >= end): callers skip it rather than iterate or delete it.
func DataSpan(s Span) (start, end []byte) { return mapSpan(DataPrefix, s) }

// IntentSpan maps a user span to engine keys [start, end) of its intents.
func IntentSpan(s Span) (start, end []byte) { return mapSpan(IntentPrefix, s) }

func mapSpan(prefix string, s Span) (start, end []byte) {
	start = prefixed(prefix, s.Start)
	if s.Empty() {
		return start, start
	}
	if s.End == nil {
		return start, prefixEnd(prefix)
	}
	return start, prefixed(prefix, s.End)
}

// RangeLocalPrefix is the prefix of range id's local metadata: "r/" + 8-byte big-endian id + "/".
func RangeLocalPrefix(id RangeID) []byte {
	out := make([]byte, 0, 11)
	out = append(out, RangeLocalByte...)
	out = binary.BigEndian.AppendUint64(out, uint64(id))
	return append(out, '/')
}

// RangeLocalSpan is [start, end) of all of range id's local metadata.
func RangeLocalSpan(id RangeID) (start, end []byte) {
	start = RangeLocalPrefix(id)
	end = append([]byte(nil), start...)
	end[len(end)-1]++
	return start, end
}

// RangeLocalKey is a key of range id's local metadata.
func RangeLocalKey(id RangeID, suffix string) []byte {
	return append(RangeLocalPrefix(id), suffix...)
}

// StateKey holds range id's state (span, generation, version base, frozen flag) on this node.
func StateKey(id RangeID) []byte { return RangeLocalKey(id, "state") }

// LocalUserPrefix is the prefix of range id's replicated range-local records ("r/<id>/u/"),
// written by local commands (meta records of a system range, transaction records).
func LocalUserPrefix(id RangeID) []byte { return RangeLocalKey(id, "u/") }

// LocalUserKey is the engine key of range id's range-local record key.
func LocalUserKey(id RangeID, key []byte) []byte { return append(LocalUserPrefix(id), key...) }

// PrefixEnd returns the first key after every key that starts with p, or nil if there is none
// (p is empty or all 0xff).
func PrefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// AppliedIndexKey holds the Raft index last applied to range id on this node.
func AppliedIndexKey(id RangeID) []byte { return RangeLocalKey(id, "applied") }

// NodeLocalKey is a node-local key (never replicated).
func NodeLocalKey(suffix string) []byte { return prefixed(NodeLocalPrefix, []byte(suffix)) }
