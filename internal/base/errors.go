package base

import "errors"

// Sentinel errors shared by all layers. The root package re-exports them under the same names;
// callers match with errors.Is.
var (
	ErrNotFound      = errors.New("bondkv: not found")
	ErrClosed        = errors.New("bondkv: closed")
	ErrEmptyKey      = errors.New("bondkv: empty key")
	ErrKeyTooLarge   = errors.New("bondkv: key too large")
	ErrValueTooLarge = errors.New("bondkv: value too large")
	ErrInvalidRange  = errors.New("bondkv: invalid range")
	// ErrAmbiguous means a write was handed to consensus but its outcome is unknown (the
	// context ended or the leader was lost first): it may or may not have been applied.
	ErrAmbiguous = errors.New("bondkv: outcome unknown: the write may or may not have been applied")
	// ErrCorruption marks data that failed a checksum or could not be decoded: a torn or
	// tampered file, a malformed snapshot stream, a non-canonical record.
	ErrCorruption = errors.New("bondkv: corruption")
)
