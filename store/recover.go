package store

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// RecoverSnapshot replaces everything of range id (its data and intent spans of span, and its
// range-local span) with the stream r written by Snapshot.WriteTo, and sets the range's applied
// index to the snapshot's. The whole stream is read and validated before anything is written;
// the replacement is then one pebble batch (range deletions, then the records, then the applied
// index) committed with fsync. A truncated or corrupt stream fails with an error wrapping
// base.ErrCorruption, a stream of another range or span with a *SnapshotMismatchError, and in
// every failure nothing changes.
//
// The batch holds the whole range in memory: fine up to the split size (64 MiB), see doc.go.
func (e *Engine) RecoverSnapshot(id base.RangeID, span base.Span, r io.Reader) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return err
	}
	if err := checkSpan(span); err != nil {
		return err
	}
	rs := e.rangeState(id)
	rs.mu.Lock()
	defer rs.mu.Unlock()

	b := e.db.NewBatch()
	defer b.Close()
	if err := clearRange(b, id, span); err != nil {
		return fmt.Errorf("store: range %d: recover snapshot: %w", id, err)
	}
	applied, err := readSnapshot(closingReader{r, e.closing}, id, span, func(k, v []byte) error { return b.Set(k, v, nil) })
	if err != nil {
		return fmt.Errorf("store: range %d: recover snapshot: %w", id, err)
	}
	var idx [8]byte
	binary.BigEndian.PutUint64(idx[:], applied)
	if err := b.Set(base.AppliedIndexKey(id), idx[:], nil); err != nil {
		return fmt.Errorf("store: range %d: recover snapshot: %w", id, err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		rs.loaded = false // unknown whether it landed: reread next time
		return fmt.Errorf("store: range %d: recover snapshot: commit: %w", id, err)
	}
	rs.applied, rs.loaded = applied, true
	rs.recovered.Add(1)
	return nil
}

// ClearRange deletes everything of range id (its data and intent spans of span, and its
// range-local span, applied index included), durably. Used when a replica is removed from
// this node.
func (e *Engine) ClearRange(id base.RangeID, span base.Span) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return err
	}
	if err := checkSpan(span); err != nil {
		return err
	}
	rs := e.rangeState(id)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	b := e.db.NewBatch()
	defer b.Close()
	if err := clearRange(b, id, span); err != nil {
		return fmt.Errorf("store: range %d: clear: %w", id, err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		rs.loaded = false
		return fmt.Errorf("store: range %d: clear: commit: %w", id, err)
	}
	rs.applied, rs.loaded = 0, true
	return nil
}

// clearRange adds range deletions of range id's three spans to b.
func clearRange(b *pebble.Batch, id base.RangeID, span base.Span) error {
	s := snapshotSpans(id, span)
	for _, sp := range s.all() {
		if err := b.DeleteRange(sp[0], sp[1], nil); err != nil {
			return err
		}
	}
	return nil
}

// closingReader fails with base.ErrClosed once the engine starts closing, so that Close does
// not wait for a slow stream.
type closingReader struct {
	r       io.Reader
	closing <-chan struct{}
}

func (c closingReader) Read(p []byte) (int, error) {
	select {
	case <-c.closing:
		return 0, base.ErrClosed
	default:
		return c.r.Read(p)
	}
}
