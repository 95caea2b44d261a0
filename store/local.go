package store

import (
	"errors"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// Range-local records (r/<id>/u/<key>) are written by OpPutLocal, OpDeleteLocal and OpCPutLocal
// of range id: value records like data records, replicated with the range, carried by its
// snapshots and covered by its checksum, but outside every user-key span. The meta range keeps
// its directory in them; transaction records live in them.

// GetLocal returns the live value of range id's range-local record key. It returns
// base.ErrNotFound if the record was never written or is deleted. It reads the node's local
// state: the caller ensures linearizability.
func (e *Engine) GetLocal(id base.RangeID, key []byte) (Value, error) {
	if err := e.enter(); err != nil {
		return Value{}, err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return Value{}, err
	}
	if err := base.CheckKey(key); err != nil {
		return Value{}, err
	}
	v, closer, err := e.db.Get(base.LocalUserKey(id, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return Value{}, base.ErrNotFound
	}
	if err != nil {
		return Value{}, fmt.Errorf("store: range %d: get local %q: %w", id, key, err)
	}
	defer closer.Close()
	r, err := decodeRecord(v)
	if err != nil {
		return Value{}, fmt.Errorf("store: range %d: get local %q: %w", id, key, err)
	}
	if r.Deleted {
		return Value{}, base.ErrNotFound
	}
	return Value{Version: r.Version, Data: append(make([]byte, 0, len(r.Data)), r.Data...)}, nil
}

// ScanLocal returns range id's live range-local records whose keys start with prefix (empty:
// all of them), ascending, at most limit of them (limit <= 0: no limit). Keys are returned
// without the r/<id>/u/ prefix. The result is read from one consistent view of the engine.
func (e *Engine) ScanLocal(id base.RangeID, prefix []byte, limit int) ([]KV, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	if err := checkRangeID(id); err != nil {
		return nil, err
	}
	if len(prefix) > base.MaxKeySize {
		return nil, fmt.Errorf("%w: prefix of %d bytes, limit %d", base.ErrKeyTooLarge, len(prefix), base.MaxKeySize)
	}
	start := base.LocalUserKey(id, prefix)
	out, err := scanRecords(e.db, start, base.PrefixEnd(start), len(base.LocalUserPrefix(id)), limit)
	if err != nil {
		return nil, fmt.Errorf("store: range %d: scan local: %w", id, err)
	}
	return out, nil
}
