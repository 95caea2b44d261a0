package store

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// Engine is the storage engine of one node: one pebble DB holding every range replica the node
// has, plus node-local keys. All methods are safe for concurrent use. Calls on one range that
// write (Apply, InitRange, RecoverSnapshot, ClearRange, DestroyRange) are serialized per range;
// calls on different ranges run concurrently (an Apply that splits or merges also locks the
// other range).
type Engine struct {
	db  *pebble.DB
	log *slog.Logger

	// mu is held shared by every call for its whole duration and exclusively by Close, so Close
	// waits for calls in flight and the pebble DB is never used after it is closed.
	mu     sync.RWMutex
	closed bool
	// closing is closed when Close starts, so that long calls (snapshot streaming) stop early
	// instead of holding Close up.
	closing   chan struct{}
	closeOnce sync.Once

	rangesMu sync.Mutex
	ranges   map[base.RangeID]*rangeState

	snapsMu sync.Mutex
	snaps   map[*Snapshot]struct{}

	// intents holds every user key that may have an intent (a superset: keys are added before
	// the batch laying an intent commits, and removed after the batch resolving it commits),
	// so that the writes and reads of keys without one skip a Pebble lookup.
	intents intentSet
}

type intentSet struct {
	mu sync.RWMutex
	m  map[string]struct{}
}

func (s *intentSet) has(key []byte) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.m[string(key)]
	return ok
}

func (s *intentSet) add(key []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]struct{})
	}
	s.m[string(key)] = struct{}{}
}

func (s *intentSet) remove(keys map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, removed := range keys {
		if removed {
			delete(s.m, k)
		}
	}
}

// rangeState is the per-range write lock and a cache of the range's applied index and state.
// Every write of a range's applied index or state key holds the range's mu (Apply holds the
// locks of every range whose state it changes, taken in ascending id order).
type rangeState struct {
	mu       sync.Mutex
	loaded   bool       // applied, state and hasState are valid
	applied  uint64     // the stored applied index, once loaded
	state    RangeState // the stored state; {Span: base.NoSpan} if hasState is false
	hasState bool

	recovered atomic.Uint64 // snapshots recovered since Open
}

// setEmpty records that the range has neither an applied index nor a state. rs.mu must be held.
func (rs *rangeState) setEmpty() {
	rs.applied, rs.state, rs.hasState, rs.loaded = 0, RangeState{Span: base.NoSpan}, false, true
}

// Open opens (creating if necessary) the engine in dir. A nil opts means defaults; *opts is never
// modified.
func Open(dir string, opts *Options) (*Engine, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("store: open: empty directory name")
	}
	cache := pebble.NewCache(o.CacheSize)
	defer cache.Unref() // pebble holds its own reference while open
	popts := &pebble.Options{
		FS:                 o.FS,
		Cache:              cache,
		MemTableSize:       uint64(o.MemTableSize),
		Logger:             pebbleLogger{log: o.Logger},
		FormatMajorVersion: pebble.FormatNewest,
	}
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	e := &Engine{
		db:      db,
		log:     o.Logger,
		closing: make(chan struct{}),
		ranges:  make(map[base.RangeID]*rangeState),
		snaps:   make(map[*Snapshot]struct{}),
	}
	start, end := base.IntentSpan(base.Span{Start: []byte{}})
	if err := iterate(db, start, end, func(k, _ []byte) (bool, error) {
		e.intents.add(k[len(base.IntentPrefix):])
		return true, nil
	}); err != nil {
		return nil, errors.Join(fmt.Errorf("store: open %s: intents: %w", dir, err), db.Close())
	}
	return e, nil
}

// Close closes every snapshot still open, then the pebble DB. It waits for calls in flight (a
// snapshot stream in progress notices Close between records and returns base.ErrClosed). Close
// is idempotent: later calls return nil. After Close every method returns base.ErrClosed.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() { close(e.closing) })
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.snapsMu.Lock()
	snaps := e.snaps
	e.snaps = nil
	e.snapsMu.Unlock()
	var errs []error
	for s := range snaps {
		errs = append(errs, s.release())
	}
	if err := e.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("store: close: %w", err))
	}
	return errors.Join(errs...)
}

// DB returns the underlying pebble DB, for node-local inspection (kvbench) only. Writing through
// it bypasses the engine's invariants and its applied-index cache. It must not be used after
// Close.
func (e *Engine) DB() *pebble.DB { return e.db }

// Sync makes every write committed so far durable: Apply commits without fsync, and a Sync
// afterwards fsyncs the write-ahead log up to that point.
func (e *Engine) Sync() error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := e.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	return nil
}

// enter begins a call: it holds e.mu shared until exit. It fails with base.ErrClosed after Close.
func (e *Engine) enter() error {
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return base.ErrClosed
	}
	return nil
}

func (e *Engine) exit() { e.mu.RUnlock() }

// rangeState returns range id's state, creating it on first use.
func (e *Engine) rangeState(id base.RangeID) *rangeState {
	e.rangesMu.Lock()
	defer e.rangesMu.Unlock()
	rs := e.ranges[id]
	if rs == nil {
		rs = &rangeState{}
		e.ranges[id] = rs
	}
	return rs
}

// checkRangeID rejects the invalid range ID 0.
func checkRangeID(id base.RangeID) error {
	if id == 0 {
		return fmt.Errorf("store: %w: range id 0", base.ErrInvalidRange)
	}
	return nil
}

// checkSpan rejects an empty or inverted span.
func checkSpan(s base.Span) error {
	if !s.Valid() {
		return fmt.Errorf("store: %w: span [%q, %q) is empty or inverted", base.ErrInvalidRange, s.Start, s.End)
	}
	return nil
}

// SnapshotsRecovered returns how many snapshots RecoverSnapshot has installed since Open, for
// the given ranges, or for all ranges if none is given. It is an in-memory counter for
// inspection and tests (a replica that fell behind a compacted log catches up by snapshot).
func (e *Engine) SnapshotsRecovered(ids ...base.RangeID) uint64 {
	e.rangesMu.Lock()
	defer e.rangesMu.Unlock()
	var n uint64
	if len(ids) == 0 {
		for _, rs := range e.ranges {
			n += rs.recovered.Load()
		}
		return n
	}
	for _, id := range ids {
		if rs := e.ranges[id]; rs != nil {
			n += rs.recovered.Load()
		}
	}
	return n
}
