package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// RecoverSnapshot replaces range id on this node with the stream r written by
// Snapshot.WriteTo: it deletes the data and intents of the stream's span (the sender's span,
// from the header) and the whole range-local span of id, then writes the stream's records (the
// range state among them) and its applied index. Data outside the stream's span is left alone,
// even if the range owned it before: another range owns it now. The whole stream is read and
// validated before anything is written; the replacement is then one pebble batch committed with
// fsync. A truncated or corrupt stream (a missing state, or one whose span is not the header's,
// included) fails with an error wrapping base.ErrCorruption, a stream of another range with a
// *SnapshotMismatchError, and in every failure nothing changes.
//
// It does not compare the snapshot's applied index with the range's: an older snapshot is
// installed too. Deciding whether to recover is dragonboat's job, and it legitimately recovers
// an older one: a snapshot imported with tools.ImportSnapshot (repair after quorum loss) is
// recovered at startup whatever the state machine's applied index, rolling the range back.
//
// The batch holds the whole range in memory: fine up to the split size (64 MiB), see doc.go.
func (e *Engine) RecoverSnapshot(id base.RangeID, r io.Reader) error {
	rs, err := e.replaceRange(id, "recover snapshot", func(b *pebble.Batch, _ RangeState) (uint64, RangeState, bool, error) {
		clear := func(span base.Span) error { return clearRange(b, id, span) }
		set := func(k, v []byte) error {
			if bytes.HasPrefix(k, []byte(base.IntentPrefix)) {
				e.intents.add(k[len(base.IntentPrefix):])
			}
			return b.Set(k, v, nil)
		}
		applied, st, err := readSnapshot(closingReader{r, e.closing}, id, clear, set)
		if err != nil {
			return 0, RangeState{}, false, err
		}
		var idx [8]byte
		binary.BigEndian.PutUint64(idx[:], applied)
		return applied, st, true, b.Set(base.AppliedIndexKey(id), idx[:], nil)
	})
	if err != nil {
		return err
	}
	rs.recovered.Add(1)
	return nil
}

// ClearRange deletes everything of range id on this node: the data and intents of the span in
// its state (none for base.NoSpan or a range without a state) and its whole range-local span,
// state and applied index included, durably. DestroyRange is the removal of a replica whose
// span another range may own now; ClearRange is for a range whose data goes with it.
func (e *Engine) ClearRange(id base.RangeID) error {
	_, err := e.replaceRange(id, "clear", func(b *pebble.Batch, cur RangeState) (uint64, RangeState, bool, error) {
		return 0, RangeState{Span: base.NoSpan}, false, clearRange(b, id, cur.Span)
	})
	return err
}

// replaceRange is the common part of RecoverSnapshot and ClearRange. Holding range id's lock, it
// lets fill build one batch from the range's current state (fill adds the deletions, the new
// contents, and names the applied index and state they bring) and commits the batch with fsync.
// op names the operation in errors. On any failure before the commit nothing changes; if the
// commit fails the cached applied index and state are dropped, to be reread. It returns the
// range's state for the caller's bookkeeping after a successful commit.
func (e *Engine) replaceRange(id base.RangeID, op string, fill func(b *pebble.Batch, cur RangeState) (applied uint64, st RangeState, hasState bool, err error)) (*rangeState, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return nil, err
	}
	rs, err := e.lockRange(id)
	if err != nil {
		return nil, err
	}
	defer rs.mu.Unlock()

	b := e.db.NewBatch()
	defer b.Close()
	applied, st, hasState, err := fill(b, rs.state)
	if err != nil {
		return nil, fmt.Errorf("store: range %d: %s: %w", id, op, err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		rs.loaded = false // unknown whether it landed: reread next time
		return nil, fmt.Errorf("store: range %d: %s: commit: %w", id, op, err)
	}
	rs.applied, rs.state, rs.hasState = applied, st, hasState
	return rs, nil
}

// clearRange adds range deletions of range id's spans to b: the data and intents of span (none
// if it is empty) and the range-local span.
func clearRange(b *pebble.Batch, id base.RangeID, span base.Span) error {
	for _, sp := range snapshotSpans(id, span).all() {
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

// ClearSpan deletes, durably, the data records and intents of the user span (not any range's
// state). The caller makes sure no range on this node owns any of it: it is for the data a
// replica leaves behind when it is removed from this node.
func (e *Engine) ClearSpan(span base.Span) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := checkSpan(span); err != nil || span.Empty() {
		return err
	}
	b := e.db.NewBatch()
	defer b.Close()
	for _, f := range []func(base.Span) ([]byte, []byte){base.DataSpan, base.IntentSpan} {
		start, end := f(span)
		if err := b.DeleteRange(start, end, nil); err != nil {
			return fmt.Errorf("store: clear %s: %w", span, err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store: clear %s: %w", span, err)
	}
	return nil
}
