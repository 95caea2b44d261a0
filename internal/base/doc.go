// Package base holds the vocabulary every other bondkv package shares: node and range
// identifiers, the storage key layout (DESIGN.md §4), size limits and the sentinel errors that
// lower layers return and the root package re-exports.
//
// Layering: base imports nothing from bondkv. Everything may import it.
//
// Key layout (one Pebble DB per node; prefixes keep each kind contiguous):
//
//	d/<userkey>                 value record {version, flags, value}
//	i/<userkey>                 intent (2PC prepare)
//	r/<rangeID:8 BE>/applied    the range's applied index on this node
//	r/<rangeID:8 BE>/state      the range's state (span, generation, version base, frozen)
//	r/<rangeID:8 BE>/u/<key>    range-local records written by replicated local commands
//	x/<suffix>                  node-local, never replicated
//
// A user key span [start, end) maps to the data span [d/start, d/end) and the intent span
// [i/start, i/end); a nil end means "to the end of the keyspace" and maps to the first key after
// the prefix. An empty span (NoSpan, the span of a system range) maps to empty engine spans.
package base
