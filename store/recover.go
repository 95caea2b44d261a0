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
// It does not compare the snapshot's applied index with the range's: an older snapshot is
// installed too. Deciding whether to recover is dragonboat's job, and it legitimately recovers
// an older one: a snapshot imported with tools.ImportSnapshot (repair after quorum loss) is
// recovered at startup whatever the state machine's applied index, rolling the range back.
//
// The batch holds the whole range in memory: fine up to the split size (64 MiB), see doc.go.
func (e *Engine) RecoverSnapshot(id base.RangeID, span base.Span, r io.Reader) error {
	rs, err := e.replaceRange(id, span, "recover snapshot", func(b *pebble.Batch) (uint64, error) {
		applied, err := readSnapshot(closingReader{r, e.closing}, id, span, func(k, v []byte) error { return b.Set(k, v, nil) })
		if err != nil {
			return 0, err
		}
		var idx [8]byte
		binary.BigEndian.PutUint64(idx[:], applied)
		return applied, b.Set(base.AppliedIndexKey(id), idx[:], nil)
	})
	if err != nil {
		return err
	}
	rs.recovered.Add(1)
	return nil
}

// ClearRange deletes everything of range id (its data and intent spans of span, and its
// range-local span, applied index included), durably. Used when a replica is removed from
// this node.
func (e *Engine) ClearRange(id base.RangeID, span base.Span) error {
	_, err := e.replaceRange(id, span, "clear", nil)
	return err
}

// replaceRange is the common part of RecoverSnapshot and ClearRange. Holding range id's lock, it
// builds one batch that deletes the range's three spans, lets fill (if not nil) add the new
// contents and name the applied index they bring (0 without fill), and commits the batch with
// fsync. op names the operation in errors. On any failure before the commit nothing changes;
// if the commit fails the cached applied index is dropped, to be reread. It returns the range's
// state for the caller's bookkeeping after a successful commit.
func (e *Engine) replaceRange(id base.RangeID, span base.Span, op string, fill func(*pebble.Batch) (applied uint64, err error)) (*rangeState, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	if err := checkRange(id, span); err != nil {
		return nil, err
	}
	rs := e.rangeState(id)
	rs.mu.Lock()
	defer rs.mu.Unlock()

	b := e.db.NewBatch()
	defer b.Close()
	if err := clearRange(b, id, span); err != nil {
		return nil, fmt.Errorf("store: range %d: %s: %w", id, op, err)
	}
	var applied uint64
	if fill != nil {
		var err error
		if applied, err = fill(b); err != nil {
			return nil, fmt.Errorf("store: range %d: %s: %w", id, op, err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		rs.loaded = false // unknown whether it landed: reread next time
		return nil, fmt.Errorf("store: range %d: %s: commit: %w", id, op, err)
	}
	rs.applied, rs.loaded = applied, true
	return rs, nil
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
