package raftgroup

import (
	"errors"
	"fmt"
	"io"

	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/store"
)

// Event is a split or merge applied by this node's replica of Range at Index. The callback that
// receives it (Config.Events) runs on the replica's apply path and must not block.
type Event struct {
	Range base.RangeID
	Index uint64
	Split *store.SplitResult
	Merge *store.MergeResult
}

// ReadFunc is a read served by Host.Read on the local replica once it is known to be up to date
// (after a ReadIndex round). It must only read.
type ReadFunc func(e *store.Engine) (any, error)

// stateMachine is the IOnDiskStateMachine of one replica: a view of one range inside the node's
// shared store.Engine. It owns no storage of its own and never closes the engine.
type stateMachine struct {
	engine *store.Engine
	id     base.RangeID
	// events receives the splits and merges this replica applies; nil = none.
	events func(Event)
	// entries is reused across Update calls; dragonboat calls Update from one goroutine per
	// replica.
	entries []store.Entry
}

var _ sm.IOnDiskStateMachine = (*stateMachine)(nil)

// Open returns the index last applied to this range, read from the same Pebble batch that
// applied it, so dragonboat replays exactly the entries after it.
func (s *stateMachine) Open(<-chan struct{}) (uint64, error) {
	idx, err := s.engine.AppliedIndex(s.id)
	if err != nil {
		return 0, fmt.Errorf("range %d: open: %w", s.id, err)
	}
	return idx, nil
}

// Update applies a batch of committed entries in one Pebble batch, without fsync: dragonboat
// calls Sync before it relies on their durability (and its own log still holds them).
func (s *stateMachine) Update(entries []sm.Entry) ([]sm.Entry, error) {
	s.entries = s.entries[:0]
	for _, e := range entries {
		s.entries = append(s.entries, store.Entry{Index: e.Index, Data: e.Cmd})
	}
	results, err := s.engine.Apply(s.id, s.entries)
	if err != nil {
		return nil, fmt.Errorf("range %d: apply [%d, %d]: %w", s.id, entries[0].Index, entries[len(entries)-1].Index, err)
	}
	for i := range entries {
		r := results[i]
		entries[i].Result = sm.Result{Value: uint64(r.Code), Data: store.EncodeConflicts(r.Conflicts)}
		if s.events != nil && (r.Split != nil || r.Merge != nil) {
			s.events(Event{Range: s.id, Index: entries[i].Index, Split: r.Split, Merge: r.Merge})
		}
	}
	return entries, nil
}

// Lookup serves a ReadFunc.
func (s *stateMachine) Lookup(q any) (any, error) {
	f, ok := q.(ReadFunc)
	if !ok {
		return nil, fmt.Errorf("range %d: unsupported query %T", s.id, q)
	}
	return f(s.engine)
}

func (s *stateMachine) Sync() error { return s.engine.Sync() }

// PrepareSnapshot pins a Pebble snapshot of the range (its span as of now); SaveSnapshot streams
// it concurrently with further updates.
func (s *stateMachine) PrepareSnapshot() (any, error) {
	snap, err := s.engine.NewSnapshot(s.id)
	if err != nil {
		return nil, fmt.Errorf("range %d: prepare snapshot: %w", s.id, err)
	}
	return snap, nil
}

func (s *stateMachine) SaveSnapshot(ctx any, w io.Writer, done <-chan struct{}) error {
	snap := ctx.(*store.Snapshot)
	defer snap.Close()
	_, err := snap.WriteTo(stopWriter{w: w, done: done})
	if errors.Is(err, sm.ErrSnapshotStopped) {
		return sm.ErrSnapshotStopped
	}
	if err != nil {
		return fmt.Errorf("range %d: save snapshot: %w", s.id, err)
	}
	return nil
}

func (s *stateMachine) RecoverFromSnapshot(r io.Reader, done <-chan struct{}) error {
	if err := s.engine.RecoverSnapshot(s.id, stopReader{r: r, done: done}); err != nil {
		if errors.Is(err, sm.ErrSnapshotStopped) {
			return sm.ErrSnapshotStopped
		}
		return fmt.Errorf("range %d: recover snapshot: %w", s.id, err)
	}
	return nil
}

// Close releases nothing: the engine is shared by every replica of the node.
func (s *stateMachine) Close() error { return nil }

// stopWriter and stopReader abort a snapshot stream when dragonboat asks the replica to stop.
type stopWriter struct {
	w    io.Writer
	done <-chan struct{}
}

func (s stopWriter) Write(p []byte) (int, error) {
	select {
	case <-s.done:
		return 0, sm.ErrSnapshotStopped
	default:
	}
	return s.w.Write(p)
}

type stopReader struct {
	r    io.Reader
	done <-chan struct{}
}

func (s stopReader) Read(p []byte) (int, error) {
	select {
	case <-s.done:
		return 0, sm.ErrSnapshotStopped
	default:
	}
	return s.r.Read(p)
}
