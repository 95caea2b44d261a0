package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// Entry is one committed Raft entry of a range: Data is the output of EncodeCommands.
type Entry struct {
	Index uint64
	Data  []byte
}

// ResultCode is the outcome of applying one entry.
type ResultCode uint8

// Result codes. Every replica computes the same code for the same entry.
const (
	// ResultApplied: every command of the entry was written.
	ResultApplied ResultCode = 1
	// ResultRejected: the entry does not decode or one of its commands fails Command.Validate;
	// nothing of it was written. The entry still counts as applied.
	ResultRejected ResultCode = 2
	// ResultSkipped: the entry's index is at or below the stored applied index, so it was applied
	// before (a re-apply after a crash); nothing was written now.
	ResultSkipped ResultCode = 3
)

func (c ResultCode) String() string {
	switch c {
	case ResultApplied:
		return "applied"
	case ResultRejected:
		return "rejected"
	case ResultSkipped:
		return "skipped"
	}
	return fmt.Sprintf("ResultCode(%d)", uint8(c))
}

// Result is the outcome of one entry, in the same position as the entry.
type Result struct {
	Code ResultCode
	// Err says why a ResultRejected entry was rejected and is nil otherwise. It wraps
	// base.ErrCorruption (the entry does not decode) or the first offending command's
	// base.ErrEmptyKey, base.ErrKeyTooLarge or base.ErrValueTooLarge. It depends on the entry
	// alone, so every replica reports the same.
	Err error
}

// Apply applies entries of range id, in ascending Index order, in one pebble batch together
// with the range's applied index, which becomes the last entry's Index. The batch is committed
// without fsync: durability comes from Sync. Each command's record gets its entry's Index as
// version; within an entry later commands win over earlier ones on the same key.
//
// An entry that does not decode, or has a command that fails Command.Validate, is skipped whole
// and reported as ResultRejected. An entry whose Index is at or below the stored applied index
// is skipped as ResultSkipped, so re-applying entries after a crash is a no-op. An entry with
// empty Data (a Raft no-op) is applied with no effect but the applied index.
//
// Apply returns an error, and changes nothing, only if the engine fails, is closed, or the call
// itself is malformed (range id 0, indices not strictly ascending).
func (e *Engine) Apply(id base.RangeID, entries []Entry) ([]Result, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return nil, err
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Index <= entries[i-1].Index {
			return nil, fmt.Errorf("store: range %d: apply: entry indices not ascending: %d after %d",
				id, entries[i].Index, entries[i-1].Index)
		}
	}
	rs := e.rangeState(id)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	applied, err := e.loadApplied(rs, id)
	if err != nil {
		return nil, err
	}

	results := make([]Result, len(entries))
	b := e.db.NewBatch()
	defer b.Close()
	var cmds []Command
	last := applied
	for i, ent := range entries {
		if ent.Index <= applied {
			results[i].Code = ResultSkipped
			continue
		}
		last = ent.Index
		if len(ent.Data) == 0 {
			results[i].Code = ResultApplied
			continue
		}
		cmds, err = decodeCommands(cmds[:0], ent.Data)
		if err == nil {
			err = ValidateCommands(cmds)
		}
		if err != nil {
			results[i] = Result{Code: ResultRejected, Err: fmt.Errorf("range %d: entry %d: %w", id, ent.Index, err)}
			continue
		}
		for _, c := range cmds {
			if err := setRecord(b, c, ent.Index); err != nil {
				return nil, fmt.Errorf("store: range %d: apply %d: %w", id, ent.Index, err)
			}
		}
		results[i].Code = ResultApplied
	}
	if last == applied {
		return results, nil // everything was skipped (or there was nothing)
	}
	var idx [8]byte
	binary.BigEndian.PutUint64(idx[:], last)
	if err := b.Set(base.AppliedIndexKey(id), idx[:], nil); err != nil {
		return nil, fmt.Errorf("store: range %d: apply: %w", id, err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return nil, fmt.Errorf("store: range %d: apply %d: commit: %w", id, last, err)
	}
	rs.applied = last
	return results, nil
}

// setRecord adds c's value record (version v) to b, encoding directly into the batch.
func setRecord(b *pebble.Batch, c Command, v uint64) error {
	value := c.Value
	deleted := c.Op == OpDelete
	if deleted {
		value = nil
	}
	op := b.SetDeferred(len(base.DataPrefix)+len(c.Key), recordLen(len(value)))
	copy(op.Key[copy(op.Key, base.DataPrefix):], c.Key)
	putRecord(op.Value, v, deleted, value)
	return op.Finish()
}

// AppliedIndex returns the index of the last entry applied to range id, 0 if none was.
func (e *Engine) AppliedIndex(id base.RangeID) (uint64, error) {
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return 0, err
	}
	rs := e.rangeState(id)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return e.loadApplied(rs, id)
}

// loadApplied returns range id's applied index, reading it on first use. rs.mu must be held.
func (e *Engine) loadApplied(rs *rangeState, id base.RangeID) (uint64, error) {
	if rs.loaded {
		return rs.applied, nil
	}
	v, err := readAppliedIndex(e.db, id)
	if err != nil {
		return 0, err
	}
	rs.applied, rs.loaded = v, true
	return v, nil
}

// readAppliedIndex reads range id's applied index from r (the DB or a pebble snapshot).
func readAppliedIndex(r pebble.Reader, id base.RangeID) (uint64, error) {
	v, closer, err := r.Get(base.AppliedIndexKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: range %d: read applied index: %w", id, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("store: range %d: applied index: %w", id, corruptf("%d bytes", len(v)))
	}
	return binary.BigEndian.Uint64(v), nil
}
