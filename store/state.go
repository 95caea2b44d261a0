package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// RangeState is what a range replica on this node is now: the span it owns and the counters
// that order its history. It is stored under base.StateKey(id) and written in the same pebble
// batch as the applied index, so the two always agree after a crash.
type RangeState struct {
	// Span is the user-key span the range owns now; base.NoSpan for a system range (the meta
	// range), whose records are all range-local.
	Span base.Span
	// Generation is bumped by every split and merge of the range.
	Generation uint64
	// VersionBase is added to an entry's index to give the version of the records it writes:
	// entry i writes version VersionBase+i. It is 0 for a range bootstrapped from nothing and
	// is raised by a split (for the new right range) and by a merge, so that versions of a key
	// never go backwards when its range changes.
	VersionBase uint64
	// Frozen is set by OpFreeze: entries that write are refused (ResultFrozen) until OpUnfreeze.
	Frozen bool
}

// Clone returns a deep copy of s.
func (s RangeState) Clone() RangeState {
	s.Span = cloneSpan(s.Span)
	return s
}

// Equal reports whether two states are the same.
func (s RangeState) Equal(o RangeState) bool {
	return s.Span.Equal(o.Span) && s.Generation == o.Generation && s.VersionBase == o.VersionBase && s.Frozen == o.Frozen
}

func (s RangeState) String() string {
	return fmt.Sprintf("{span %s gen %d vbase %d frozen %v}", s.Span, s.Generation, s.VersionBase, s.Frozen)
}

// validate checks that s can be stored: a non-empty span or exactly base.NoSpan, bounds at most
// base.MaxKeySize bytes.
func (s RangeState) validate() error {
	sp := s.Span
	if len(sp.Start) > base.MaxKeySize || len(sp.End) > base.MaxKeySize {
		return fmt.Errorf("%w: span bound longer than %d bytes", base.ErrInvalidRange, base.MaxKeySize)
	}
	if sp.Empty() && !sp.Equal(base.NoSpan) {
		return fmt.Errorf("%w: span %s is empty or inverted (use base.NoSpan)", base.ErrInvalidRange, sp)
	}
	return nil
}

// The stored encoding of a RangeState:
//
//	version byte (1) | flags byte (bit 0 frozen) | generation uint64 BE | version base uint64 BE | span
//
// and a span (here, in MergeArgs and in snapshot headers) is
//
//	start (uvarint length | bytes) | end: byte 0 (unbounded) or byte 1, uvarint length | bytes
const (
	stateVersion = 1
	stateFrozen  = 1 << 0
)

func encodeState(s RangeState) []byte {
	b := make([]byte, 0, 2+16+2*binary.MaxVarintLen64+len(s.Span.Start)+len(s.Span.End)+1)
	b = append(b, stateVersion)
	var flags byte
	if s.Frozen {
		flags |= stateFrozen
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, s.Generation)
	b = binary.BigEndian.AppendUint64(b, s.VersionBase)
	return appendSpan(b, s.Span)
}

// decodeState decodes a stored state into an owned copy. Anything non-canonical wraps
// base.ErrCorruption.
func decodeState(b []byte) (RangeState, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != stateVersion {
		return RangeState{}, corruptf("range state: unknown version %d", v)
	}
	flags := d.byte()
	var s RangeState
	s.Generation = d.uint64()
	s.VersionBase = d.uint64()
	s.Span = d.span()
	switch {
	case d.err != nil:
		return RangeState{}, fmt.Errorf("range state: %w", d.err)
	case flags&^stateFrozen != 0:
		return RangeState{}, corruptf("range state: unknown flags %#x", flags)
	case d.off != len(b):
		return RangeState{}, corruptf("range state: %d trailing bytes", len(b)-d.off)
	}
	s.Frozen = flags&stateFrozen != 0
	if err := s.validate(); err != nil {
		return RangeState{}, corruptf("range state: %v", err)
	}
	return s.Clone(), nil
}

func appendSpan(b []byte, s base.Span) []byte {
	b = binary.AppendUvarint(b, uint64(len(s.Start)))
	b = append(b, s.Start...)
	if s.End == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(len(s.End)))
	return append(b, s.End...)
}

// span reads a span written by appendSpan; Start and End alias d.b (End is non-nil if bounded).
func (d *decoder) span() base.Span {
	var s base.Span
	s.Start = d.bytes()
	switch m := d.byte(); {
	case d.err != nil:
	case m == 1:
		s.End = d.bytes()
	case m != 0:
		d.err = corruptf("bad span end marker %d", m)
	}
	return s
}

func (d *decoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b)-d.off < 8 {
		d.err = corruptf("truncated at byte %d", d.off)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

// readState reads range id's state from r (the DB or a pebble snapshot); ok is false if the
// range has none.
func readState(r pebble.Reader, id base.RangeID) (st RangeState, ok bool, err error) {
	v, closer, err := r.Get(base.StateKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return RangeState{Span: base.NoSpan}, false, nil
	}
	if err != nil {
		return RangeState{}, false, fmt.Errorf("store: range %d: read state: %w", id, err)
	}
	defer closer.Close()
	st, err = decodeState(v)
	if err != nil {
		return RangeState{}, false, fmt.Errorf("store: range %d: %w", id, err)
	}
	return st, true, nil
}

// load fills rs's cache of range id's applied index and state if it is not loaded yet.
// rs.mu must be held.
func (e *Engine) load(rs *rangeState, id base.RangeID) error {
	if rs.loaded {
		return nil
	}
	applied, err := readAppliedIndex(e.db, id)
	if err != nil {
		return err
	}
	st, ok, err := readState(e.db, id)
	if err != nil {
		return err
	}
	rs.applied, rs.state, rs.hasState, rs.loaded = applied, st, ok, true
	return nil
}

// lockRange returns range id's state locked and loaded. The caller unlocks rs.mu.
func (e *Engine) lockRange(id base.RangeID) (*rangeState, error) {
	rs := e.rangeState(id)
	rs.mu.Lock()
	if err := e.load(rs, id); err != nil {
		rs.mu.Unlock()
		return nil, err
	}
	return rs, nil
}

// InitRange creates range id's state st on this node if the range has none: the bootstrap of
// a range here (range 1 and the first user range on a fresh cluster, a range created from a
// snapshot later). If the range has a state already it is left alone and InitRange returns nil,
// so calling it again after a restart is harmless. The write is fsynced. st.Span must be a
// non-empty span or exactly base.NoSpan, else the error wraps base.ErrInvalidRange.
func (e *Engine) InitRange(id base.RangeID, st RangeState) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return err
	}
	if err := st.validate(); err != nil {
		return fmt.Errorf("store: range %d: init: %w", id, err)
	}
	rs, err := e.lockRange(id)
	if err != nil {
		return err
	}
	defer rs.mu.Unlock()
	if rs.hasState {
		return nil
	}
	st = st.Clone()
	if err := e.db.Set(base.StateKey(id), encodeState(st), pebble.Sync); err != nil {
		rs.loaded = false // unknown whether it landed: reread next time
		return fmt.Errorf("store: range %d: init: %w", id, err)
	}
	rs.state, rs.hasState = st, true
	return nil
}

// RangeState returns range id's state on this node; ok is false if the range has none (then
// the state is the zero state with base.NoSpan).
func (e *Engine) RangeState(id base.RangeID) (RangeState, bool, error) {
	if err := e.enter(); err != nil {
		return RangeState{}, false, err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return RangeState{}, false, err
	}
	rs, err := e.lockRange(id)
	if err != nil {
		return RangeState{}, false, err
	}
	defer rs.mu.Unlock()
	return rs.state.Clone(), rs.hasState, nil
}

// RangeVersion returns the version the last applied entry of range id had: VersionBase plus the
// applied index. Every record the range has written has a version at most this.
func (e *Engine) RangeVersion(id base.RangeID) (uint64, error) {
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return 0, err
	}
	rs, err := e.lockRange(id)
	if err != nil {
		return 0, err
	}
	defer rs.mu.Unlock()
	return rs.state.VersionBase + rs.applied, nil
}

// Ranges returns every range that has a state on this node, ascending: the replicas to restart
// after a restart.
func (e *Engine) Ranges() (ids []base.RangeID, err error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	lower := []byte(base.RangeLocalByte)
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: base.PrefixEnd(lower)})
	if err != nil {
		return nil, fmt.Errorf("store: ranges: %w", err)
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("store: ranges: %w", cerr)
		}
	}()
	// Visit one key per range: seek to its state key, then past its local span.
	const prefixLen = len(base.RangeLocalByte) + 8
	for valid := it.First(); valid; {
		k := it.Key()
		if len(k) < prefixLen {
			return nil, fmt.Errorf("store: ranges: %w", corruptf("short range-local key %q", k))
		}
		id := base.RangeID(binary.BigEndian.Uint64(k[len(base.RangeLocalByte):]))
		stateKey := base.StateKey(id)
		switch c := bytes.Compare(k, stateKey); {
		case c < 0:
			valid = it.SeekGE(stateKey)
			continue
		case c == 0:
			ids = append(ids, id)
		}
		if id == ^base.RangeID(0) {
			break
		}
		valid = it.SeekGE(base.RangeLocalPrefix(id + 1))
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("store: ranges: %w", err)
	}
	return ids, nil
}

// DestroyRange deletes range id's range-local keys (state and applied index included),
// durably: the replica is gone from this node. It does not delete data records or intents,
// which are shared by key with whichever range owns their span now; ClearRange deletes those
// too.
func (e *Engine) DestroyRange(id base.RangeID) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return err
	}
	rs := e.rangeState(id)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	start, end := base.RangeLocalSpan(id)
	if err := e.db.DeleteRange(start, end, pebble.Sync); err != nil {
		rs.loaded = false
		return fmt.Errorf("store: range %d: destroy: %w", id, err)
	}
	rs.setEmpty()
	return nil
}
