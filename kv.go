package bondkv

import (
	"context"
	"errors"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/store"
)

// KV is one key and its value, as returned by Scan.
type KV struct {
	Key, Value []byte
}

// Put sets key to value. It returns once the write is committed by a quorum and applied; an
// acknowledged write survives the loss of any minority of nodes and a crash of every node. The
// DB does not keep key or value after Put returns.
func (db *DB) Put(ctx context.Context, key, value []byte) error {
	if err := base.CheckKey(key); err != nil {
		return err
	}
	if err := base.CheckValue(value); err != nil {
		return err
	}
	return db.write(ctx, store.Command{Op: store.OpPut, Key: key, Value: value})
}

// Delete removes key. Deleting an absent key is not an error.
func (db *DB) Delete(ctx context.Context, key []byte) error {
	if err := base.CheckKey(key); err != nil {
		return err
	}
	return db.write(ctx, store.Command{Op: store.OpDelete, Key: key})
}

func (db *DB) write(ctx context.Context, cmd store.Command) error {
	if err := db.checkOpen(); err != nil {
		return err
	}
	res, err := db.host.Propose(ctx, userRange, []store.Command{cmd})
	if err != nil {
		return fmt.Errorf("bondkv: write: %w", err)
	}
	if res.Code != store.ResultApplied {
		// Input is validated before it is proposed, so this means a replica could not decode
		// what was proposed.
		return fmt.Errorf("bondkv: write: %w: the replicas %s the entry", ErrCorruption, res.Code)
	}
	return nil
}

// Get returns the value of key, or ErrNotFound. The read is linearizable: it sees every write
// acknowledged before Get was called. The returned slice belongs to the caller.
func (db *DB) Get(ctx context.Context, key []byte) ([]byte, error) {
	if err := base.CheckKey(key); err != nil {
		return nil, err
	}
	if err := db.checkOpen(); err != nil {
		return nil, err
	}
	v, err := db.host.Read(ctx, userRange, func(e *store.Engine) (any, error) { return e.Get(key) })
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("bondkv: get: %w", err)
	}
	return v.(store.Value).Data, nil
}

// Scan returns up to limit keys (limit <= 0: no limit) in [start, end) in ascending order, with
// their values; a nil end means the end of the keyspace. It is linearizable like Get. The
// returned slices belong to the caller.
func (db *DB) Scan(ctx context.Context, start, end []byte, limit int) ([]KV, error) {
	span := base.Span{Start: start, End: end}
	if !span.Valid() {
		return nil, fmt.Errorf("%w: end %q is not after start %q", ErrInvalidRange, end, start)
	}
	if len(start) > MaxKeySize || len(end) > MaxKeySize {
		return nil, fmt.Errorf("%w: scan bound over %d bytes", ErrKeyTooLarge, MaxKeySize)
	}
	if err := db.checkOpen(); err != nil {
		return nil, err
	}
	v, err := db.host.Read(ctx, userRange, func(e *store.Engine) (any, error) { return e.Scan(span, limit) })
	if err != nil {
		return nil, fmt.Errorf("bondkv: scan: %w", err)
	}
	kvs := v.([]store.KV)
	out := make([]KV, len(kvs))
	for i, kv := range kvs {
		out[i] = KV{Key: kv.Key, Value: kv.Value.Data}
	}
	return out, nil
}
