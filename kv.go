package bondkv

import (
	"context"
	"errors"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/shard"
	"github.com/bondkv/bondkv/store"
)

// KV is one key and its value, as returned by Scan.
type KV struct {
	Key, Value []byte
}

// Put sets key to value. It returns once the write is committed by a quorum and applied; an
// acknowledged write survives the loss of any minority of nodes and a crash of every node. The
// DB does not keep key or value after Put returns. A node that holds no replica of the key's
// range forwards the write to one that does.
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
	for {
		err := db.node.Write(ctx, cmd.Key, []store.Command{cmd})
		var cf *shard.ConflictError
		if errors.As(err, &cf) && !cf.Conflict.Txn.IsZero() {
			// A transaction holds the key: wait for it to end (or expire), resolve it, retry.
			// Nothing of this write was applied.
			in := store.Intent{Txn: cf.Conflict.Txn, Anchor: cf.Conflict.Anchor}
			if _, err := db.resolveIntent(ctx, cmd.Key, in, true); err != nil {
				return fmt.Errorf("bondkv: write: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("bondkv: write: %w", err)
		}
		return nil
	}
}

// Get returns the value of key, or ErrNotFound. The read is linearizable: it sees every write
// acknowledged before Get was called; on a range whose policy has Eventual consistency it is
// served by the nearest replica instead, at most Options.Ranges.MaxStaleness behind (GetStale
// reports by how much). The returned slice belongs to the caller.
func (db *DB) Get(ctx context.Context, key []byte) ([]byte, error) {
	if err := base.CheckKey(key); err != nil {
		return nil, err
	}
	if err := db.checkOpen(); err != nil {
		return nil, err
	}
	if p, ok := db.node.CachedPolicy(key); ok && p.Consistency == Eventual {
		r, err := db.GetStale(ctx, key, db.opts.Ranges.MaxStaleness)
		if err != nil {
			return nil, err
		}
		if !r.Found {
			return nil, ErrNotFound
		}
		return r.Value, nil
	}
	v, err := db.txnGet(ctx, key, store.TxnID{}, false, false)
	if err != nil {
		return nil, err
	}
	if !v.Live {
		return nil, ErrNotFound
	}
	return v.Value, nil
}

// Scan returns up to limit keys (limit <= 0: no limit) in [start, end) in ascending order, with
// their values; a nil end means the end of the keyspace. The part of the scan inside each range
// is linearizable like Get; a scan that crosses ranges reads them one after another, not at
// one instant. The returned slices belong to the caller.
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
	parts, err := db.txnScan(ctx, span, limit, store.TxnID{}, false)
	if err != nil {
		return nil, err
	}
	var out []KV
	for _, p := range parts {
		for _, kv := range p.KVs {
			out = append(out, KV{Key: kv.Key, Value: kv.Value.Data})
		}
	}
	return out, nil
}

// Split makes key the first key of a range (pre-splitting). It returns once the split is
// applied and recorded in the meta range; splitting at a key that already starts a range does
// nothing. Ranges created by Split are never merged automatically.
func (db *DB) Split(ctx context.Context, key []byte) error {
	if err := base.CheckKey(key); err != nil {
		return err
	}
	if err := db.checkOpen(); err != nil {
		return err
	}
	if err := db.node.Split(ctx, key); err != nil {
		return fmt.Errorf("bondkv: split: %w", err)
	}
	return nil
}

// RangePolicy is a range's placement policy: how many voting replicas it wants (0 = the
// cluster's default, Options.Ranges.Replicas) and which locality labels their nodes must carry.
type RangePolicy = shard.Policy

// SetRangePolicy sets the placement policy of the range holding key. The placement driver then
// moves the range's replicas to match, with the same rolling steps as any move; ranges later
// split from it inherit the policy. It returns once the policy is recorded, not once the
// replicas have moved.
func (db *DB) SetRangePolicy(ctx context.Context, key []byte, p RangePolicy) error {
	if err := db.checkOpen(); err != nil {
		return err
	}
	if err := db.node.SetPolicy(ctx, key, p); err != nil {
		return fmt.Errorf("bondkv: set range policy: %w", err)
	}
	return nil
}
