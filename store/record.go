package store

import (
	"encoding/binary"

	"github.com/bondkv/bondkv/internal/base"
)

// A value record is what the engine stores under d/<userkey>:
//
//	version uint64 big-endian | flags byte | value
//
// version is the Raft index of the entry that wrote it. flags bit 0 marks a tombstone (a
// delete), whose value part is empty; the other bits must be zero.
const (
	recordHeaderLen = 9
	flagTombstone   = 1 << 0
	knownFlags      = flagTombstone
)

// Record is a key's stored value record, tombstones included (see GetRecord).
type Record struct {
	// Version is the Raft index of the entry that last wrote or deleted the key.
	Version uint64
	// Deleted reports a tombstone: the key was deleted at Version.
	Deleted bool
	// Data is the value (nil for a tombstone).
	Data []byte
}

// recordLen is the encoded length of a record with a value of n bytes.
func recordLen(n int) int { return recordHeaderLen + n }

// putRecord encodes a record into dst, which must be exactly recordLen(len(value)) bytes.
func putRecord(dst []byte, version uint64, deleted bool, value []byte) {
	binary.BigEndian.PutUint64(dst, version)
	var flags byte
	if deleted {
		flags = flagTombstone
	}
	dst[8] = flags
	copy(dst[recordHeaderLen:], value)
}

// decodeRecord decodes a value record; Data aliases b. A short record, unknown flag bits, a
// tombstone with a value or a value larger than base.MaxValueSize wrap base.ErrCorruption.
func decodeRecord(b []byte) (Record, error) {
	if len(b) < recordHeaderLen {
		return Record{}, corruptf("value record of %d bytes", len(b))
	}
	flags := b[8]
	if flags&^knownFlags != 0 {
		return Record{}, corruptf("value record with unknown flags %#x", flags)
	}
	r := Record{Version: binary.BigEndian.Uint64(b), Deleted: flags&flagTombstone != 0}
	value := b[recordHeaderLen:]
	switch {
	case r.Deleted && len(value) != 0:
		return Record{}, corruptf("tombstone with a %d-byte value", len(value))
	case len(value) > base.MaxValueSize:
		return Record{}, corruptf("value record of %d bytes exceeds the limit", len(value))
	case !r.Deleted:
		r.Data = value
	}
	return r, nil
}
