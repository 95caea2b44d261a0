package store

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
)

// checksumDomain starts every checksum, so that a change of the hashed layout changes every sum.
const checksumDomain = "bondkv/store/checksum/v2\x00"

// Checksum returns range id's applied index and a SHA-256 over it and every key and value the
// range owns on this node, all read at one pebble snapshot: the data and intent spans of the
// span in the range's state (none for base.NoSpan or a range without a state) and the
// range-local span except the applied-index key, so the state (span, generation, version base,
// frozen) and the range-local records are covered. Replicas at the same applied index must agree
// on the sum; a difference is divergence. The hash input is
//
//	checksumDomain | applied uint64 BE | for each key (ascending): uvarint keyLen | key | uvarint valueLen | value
func (e *Engine) Checksum(id base.RangeID) (applied uint64, sum [32]byte, err error) {
	if err := e.enter(); err != nil {
		return 0, sum, err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return 0, sum, err
	}
	snap := e.db.NewSnapshot()
	defer snap.Close()
	applied, err = readAppliedIndex(snap, id)
	if err != nil {
		return 0, sum, err
	}
	st, _, err := readState(snap, id)
	if err != nil {
		return 0, sum, err
	}
	h := sha256.New()
	var buf [binary.MaxVarintLen64]byte
	h.Write([]byte(checksumDomain))
	h.Write(binary.BigEndian.AppendUint64(buf[:0], applied))
	appliedKey := base.AppliedIndexKey(id)
	err = forEachInSpans(snap, snapshotSpans(id, st.Span).all(), func(k, v []byte) (bool, error) {
		if string(k) == string(appliedKey) {
			return true, nil
		}
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
