package store

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// Snapshot is a consistent, point-in-time view of one range on this node: the data and intent
// spans of the span in its state and its range-local span, with the applied index and the state
// of that moment. It pins a pebble
// snapshot (which holds back compaction of overwritten data) until Close. Engine.Close closes
// snapshots still open.
type Snapshot struct {
	e       *Engine
	id      base.RangeID
	span    base.Span
	applied uint64

	mu   sync.Mutex // serializes WriteTo and Close
	snap *pebble.Snapshot
}

// NewSnapshot takes a snapshot of range id now; its span is the one in the range's state. A
// range without a state on this node cannot be snapshotted (the error wraps
// base.ErrInvalidRange): a stream without a state could not be recovered.
func (e *Engine) NewSnapshot(id base.RangeID) (*Snapshot, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return nil, err
	}
	snap := e.db.NewSnapshot()
	applied, err := readAppliedIndex(snap, id)
	if err != nil {
		snap.Close()
		return nil, err
	}
	st, ok, err := readState(snap, id)
	if err == nil && !ok {
		err = fmt.Errorf("store: range %d: snapshot: %w: no range state on this node", id, base.ErrInvalidRange)
	}
	if err != nil {
		snap.Close()
		return nil, err
	}
	s := &Snapshot{e: e, id: id, span: st.Span, applied: applied, snap: snap}
	e.snapsMu.Lock()
	e.snaps[s] = struct{}{}
	e.snapsMu.Unlock()
	return s, nil
}

// AppliedIndex is the range's applied index at the moment the snapshot was taken.
func (s *Snapshot) AppliedIndex() uint64 { return s.applied }

// Span is the range's span at the moment the snapshot was taken (the stream header's).
func (s *Snapshot) Span() base.Span { return cloneSpan(s.span) }

// WriteTo streams the snapshot to w in the format described in doc.go. It is
// WriteToContext with a background context.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	return s.WriteToContext(context.Background(), w)
}

// WriteToContext streams the snapshot to w and returns the number of bytes written. It stops
// with ctx's error when ctx is done, and with base.ErrClosed when the engine is closing; a
// stopped stream is incomplete and RecoverSnapshot rejects it. A snapshot may be written any
// number of times until Close.
func (s *Snapshot) WriteToContext(ctx context.Context, w io.Writer) (int64, error) {
	e := s.e
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.exit()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap == nil {
		return 0, fmt.Errorf("store: range %d: snapshot: %w", s.id, base.ErrClosed)
	}
	sw := newSnapshotWriter(w, s.id, s.span, s.applied)
	appliedKey := base.AppliedIndexKey(s.id)
	err := s.forEach(func(k, v []byte) (bool, error) {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-e.closing:
			return false, base.ErrClosed
		default:
		}
		if string(k) == string(appliedKey) {
			return true, nil // carried by the header
		}
		return true, sw.record(k, v)
	})
	if err != nil {
		return sw.hw.n, fmt.Errorf("store: range %d: write snapshot: %w", s.id, err)
	}
	n, err := sw.finish()
	if err != nil {
		return n, fmt.Errorf("store: range %d: write snapshot: %w", s.id, err)
	}
	return n, nil
}

// forEach visits every key of the range's three spans in ascending order. s.mu must be held.
func (s *Snapshot) forEach(fn func(k, v []byte) (bool, error)) error {
	return forEachInSpans(s.snap, snapshotSpans(s.id, s.span).all(), fn)
}

// forEachInSpans visits the keys of r in each of the [start, end) spans in turn until fn returns
// false or an error.
func forEachInSpans(r pebble.Reader, spans [][2][]byte, fn func(k, v []byte) (bool, error)) error {
	stopped := false
	wrapped := func(k, v []byte) (bool, error) {
		more, err := fn(k, v)
		stopped = !more
		return more, err
	}
	for _, sp := range spans {
		if err := iterate(r, sp[0], sp[1], wrapped); err != nil || stopped {
			return err
		}
	}
	return nil
}

// Close releases the snapshot. It is idempotent and waits for a WriteTo in progress.
func (s *Snapshot) Close() error {
	e := s.e
	if err := e.enter(); err != nil {
		return nil // Engine.Close released every snapshot
	}
	defer e.exit()
	e.snapsMu.Lock()
	delete(e.snaps, s)
	e.snapsMu.Unlock()
	return s.release()
}

// release closes the pebble snapshot once.
func (s *Snapshot) release() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap == nil {
		return nil
	}
	err := s.snap.Close()
	s.snap = nil
	if err != nil {
		return fmt.Errorf("store: range %d: close snapshot: %w", s.id, err)
	}
	return nil
}

func cloneSpan(s base.Span) base.Span {
	c := base.Span{Start: append([]byte(nil), s.Start...)}
	if s.End != nil {
		c.End = append([]byte{}, s.End...)
	}
	return c
}
