package base

import (
	"bytes"
	"encoding/binary"
)

// Key prefixes of the storage layout.
const (
	DataPrefix      = "d/"
	IntentPrefix    = "i/"
	RangeLocalByte  = "r/"
	NodeLocalPrefix = "x/"
)

// Span is a half-open span [Start, End) of user keys. A nil End is unbounded.
type Span struct {
	Start, End []byte
}

// FullSpan covers every user key.
var FullSpan = Span{}

// Contains reports whether the user key k is inside the span.
func (s Span) Contains(k []byte) bool {
	return bytes.Compare(k, s.Start) >= 0 && (s.End == nil || bytes.Compare(k, s.End) < 0)
}

// Valid reports whether Start < End (or End is unbounded).
func (s Span) Valid() bool { return s.End == nil || bytes.Compare(s.Start, s.End) < 0 }

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

// DataSpan maps a user span to engine keys [start, end) of its value records.
func DataSpan(s Span) (start, end []byte) { return mapSpan(DataPrefix, s) }

// IntentSpan maps a user span to engine keys [start, end) of its intents.
func IntentSpan(s Span) (start, end []byte) { return mapSpan(IntentPrefix, s) }

func mapSpan(prefix string, s Span) (start, end []byte) {
	start = prefixed(prefix, s.Start)
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

// AppliedIndexKey holds the Raft index last applied to range id on this node.
func AppliedIndexKey(id RangeID) []byte { return RangeLocalKey(id, "applied") }

// NodeLocalKey is a node-local key (never replicated).
func NodeLocalKey(suffix string) []byte { return prefixed(NodeLocalPrefix, []byte(suffix)) }
