package shard

import (
	"errors"
	"fmt"
)

// ErrRangeMoved is matched (errors.Is) by every *RangeMovedError.
var ErrRangeMoved = errors.New("bondkv: range moved")

// RangeMovedError says that a request reached a range that no longer owns its key (it was
// split, merged or moved) or a node that no longer holds it. Desc, when known, is the current
// descriptor of the range the request went to; the router refreshes its cache from it and
// retries, so callers of the DB see it only when retries run out.
type RangeMovedError struct {
	Desc   *Descriptor
	Reason string
}

func (e *RangeMovedError) Error() string {
	if e.Desc == nil {
		return fmt.Sprintf("bondkv: range moved: %s", e.Reason)
	}
	return fmt.Sprintf("bondkv: range moved: %s (now %s)", e.Reason, e.Desc)
}

// Is makes errors.Is(err, ErrRangeMoved) hold.
func (e *RangeMovedError) Is(target error) bool { return target == ErrRangeMoved }

// errFrozen is returned for a write to a range being merged; the router waits and retries.
var errFrozen = errors.New("shard: range is frozen for a merge")

// ErrNoQuorum is returned when no replica of a range could be reached.
var ErrNoQuorum = errors.New("bondkv: no replica of the range is reachable")
