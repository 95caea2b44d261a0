package store

import (
	"errors"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// Value is a live value and its version.
type Value struct {
	// Version is the Raft index of the entry that wrote the value.
	Version uint64
	// Data is a copy owned by the caller (non-nil, possibly empty).
	Data []byte
}

// KV is one key-value pair returned by Scan (Key is a user key) or ScanLocal (Key is a
// range-local record key). Both are owned by the caller.
type KV struct {
	Key   []byte
	Value Value
}

// Get returns the live value of the user key. It returns base.ErrNotFound if the key was never
// written or is deleted, and base.ErrEmptyKey / base.ErrKeyTooLarge for a key Apply would
// reject. It reads the node's local state: the caller ensures linearizability.
func (e *Engine) Get(key []byte) (Value, error) {
	r, err := e.GetRecord(key)
	if err != nil {
		return Value{}, err
	}
	if r.Deleted {
		return Value{}, base.ErrNotFound
	}
	return Value{Version: r.Version, Data: r.Data}, nil
}

// GetRecord returns the user key's record including a tombstone, so the version of a deletion
// is known (transactions validate the read versions of absent keys). It returns
// base.ErrNotFound only if the key has no record at all. Data is a copy owned by the caller.
func (e *Engine) GetRecord(key []byte) (Record, error) {
	if err := e.enter(); err != nil {
		return Record{}, err
	}
	defer e.exit()
	if err := base.CheckKey(key); err != nil {
		return Record{}, err
	}
	v, closer, err := e.db.Get(base.DataKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return Record{}, base.ErrNotFound
	}
	if err != nil {
		return Record{}, fmt.Errorf("store: get %q: %w", key, err)
	}
	defer closer.Close()
	r, err := decodeRecord(v)
	if err != nil {
		return Record{}, fmt.Errorf("store: get %q: %w", key, err)
	}
	if !r.Deleted {
		r.Data = append(make([]byte, 0, len(r.Data)), r.Data...)
	}
	return r, nil
}

// Scan returns the live keys of span in ascending order with their values, at most limit of
// them (limit <= 0: no limit). Deleted keys are skipped and do not count against the limit.
// The result is read from one consistent view of the engine.
func (e *Engine) Scan(span base.Span, limit int) ([]KV, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	if err := checkSpan(span); err != nil {
		return nil, err
	}
	start, end := base.DataSpan(span)
	out, err := scanRecords(e.db, start, end, len(base.DataPrefix), limit)
	if err != nil {
		return nil, fmt.Errorf("store: scan: %w", err)
	}
	return out, nil
}

// scanRecords returns the live value records of [start, end) of r, ascending, with keys stripped
// of their first prefixLen bytes, at most limit of them (limit <= 0: no limit). Keys and values
// are owned copies.
func scanRecords(r pebble.Reader, start, end []byte, prefixLen, limit int) ([]KV, error) {
	var out []KV
	err := iterate(r, start, end, func(k, v []byte) (bool, error) {
		r, err := decodeRecord(v)
		if err != nil {
			return false, fmt.Errorf("key %q: %w", k, err)
		}
		if r.Deleted {
			return true, nil
		}
		user := k[prefixLen:]
		buf := make([]byte, len(user)+len(r.Data))
		copy(buf[copy(buf, user):], r.Data)
		out = append(out, KV{
			Key:   buf[:len(user):len(user)],
			Value: Value{Version: r.Version, Data: buf[len(user):]},
		})
		return limit <= 0 || len(out) < limit, nil
	})
	return out, err
}

// iterate calls fn for each key in [start, end) of r in ascending order until fn returns false
// or an error. k and v are valid only during the call.
func iterate(r pebble.Reader, start, end []byte, fn func(k, v []byte) (bool, error)) (err error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := it.Close(); err == nil {
			err = cerr
		}
	}()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		more, err := fn(it.Key(), v)
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}
