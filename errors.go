package bondkv

import (
	"errors"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/shard"
)

// Sentinel errors. Match them with errors.Is; the error returned usually wraps one of them with
// context (which range, which limit).
var (
	// ErrNotFound: the key has no value.
	ErrNotFound = base.ErrNotFound
	// ErrClosed: the DB was closed; every call after Close returns it.
	ErrClosed = base.ErrClosed
	// ErrEmptyKey: keys must be at least one byte long.
	ErrEmptyKey = base.ErrEmptyKey
	// ErrKeyTooLarge: the key is longer than MaxKeySize.
	ErrKeyTooLarge = base.ErrKeyTooLarge
	// ErrValueTooLarge: the value is longer than MaxValueSize.
	ErrValueTooLarge = base.ErrValueTooLarge
	// ErrInvalidRange: a scan's end is not after its start.
	ErrInvalidRange = base.ErrInvalidRange
	// ErrAmbiguous: a write reached consensus but its outcome is unknown (the context ended or
	// the leader was lost first). It may or may not have been applied; read to find out.
	ErrAmbiguous = base.ErrAmbiguous
	// ErrCorruption marks on-disk or on-wire data that failed validation.
	ErrCorruption = base.ErrCorruption
	// ErrInvalidOptions: Open was given options that cannot work; the error lists every problem.
	ErrInvalidOptions = errors.New("bondkv: invalid options")
)

// Size limits (bytes).
const (
	MaxKeySize   = base.MaxKeySize
	MaxValueSize = base.MaxValueSize
)

// ErrRangeMoved is matched by *RangeMovedError: a request reached a range that no longer owns
// its key. The DB retries such requests itself; callers see it only when retries ran out.
var ErrRangeMoved = shard.ErrRangeMoved

// RangeMovedError carries the current descriptor of the range a request went to, when known.
type RangeMovedError = shard.RangeMovedError

// RangeDescriptor describes one range: span, replicas, policy, generation.
type RangeDescriptor = shard.Descriptor

// ErrConditionFailed: a write's condition did not hold (a merge onto a value its function
// cannot read, say). Nothing was written.
var ErrConditionFailed = shard.ErrConditionFailed
