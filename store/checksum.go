package store

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
)

// checksumDomain starts every checksum, so that a change of the hashed layout changes every sum.
const checksumDomain = "bondkv/store/checksum/v1\x00"

// Checksum returns range id's applied index and a SHA-256 over it and the keys and values of
// the range's data and intent spans, all read at one pebble snapshot. Replicas at the same
// applied index must agree on the sum; a difference is divergence. The hash input is
//
//	checksumDomain | applied uint64 BE | for each key (ascending): uvarint keyLen | key | uvarint valueLen | value
//
// Range-local metadata other than the applied index is not covered.
func (e *Engine) Checksum(id base.RangeID, span base.Span) (applied uint64, sum [32]byte, err error) {
	if err := e.enter(); err != nil {
		return 0, sum, err
	}
	defer e.exit()
	if err := checkRange(id, span); err != nil {
		return 0, sum, err
	}
	snap := e.db.NewSnapshot()
	defer snap.Close()
	applied, err = readAppliedIndex(snap, id)
	if err != nil {
		return 0, sum, err
	}
	h := sha256.New()
	var buf [binary.MaxVarintLen64]byte
	h.Write([]byte(checksumDomain))
	h.Write(binary.BigEndian.AppendUint64(buf[:0], applied))
	bounds := snapshotSpans(id, span)
	spans := [][2][]byte{{bounds.dataStart, bounds.dataEnd}, {bounds.intentStart, bounds.intentEnd}}
	err = forEachInSpans(snap, spans, func(k, v []byte) (bool, error) {
		h.Write(binary.AppendUvarint(buf[:0], uint64(len(k))))
		h.Write(k)
		h.Write(binary.AppendUvarint(buf[:0], uint64(len(v))))
		h.Write(v)
		return true, nil
	})
	if err != nil {
		return 0, sum, fmt.Errorf("store: range %d: checksum: %w", id, err)
	}
	h.Sum(sum[:0])
	return applied, sum, nil
}
