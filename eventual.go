package bondkv

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/shard"
	"github.com/bondkv/bondkv/store"
)

// Consistency is a range's read consistency (RangePolicy.Consistency).
type Consistency = shard.Consistency

const (
	// Strong: every read is linearizable. The default.
	Strong = shard.Strong
	// Eventual: Get reads the nearest replica, at most Options.Ranges.MaxStaleness behind.
	// Writes are as durable as on any range; PutIfVersion and the Merge functions let
	// concurrent writers of such data avoid lost updates without transactions.
	Eventual = shard.Eventual
)

// ErrVersionMismatch: PutIfVersion found another version. Nothing was written.
var ErrVersionMismatch = errors.New("bondkv: version mismatch")

// StaleRead is a bounded-staleness read.
type StaleRead struct {
	Value   []byte
	Found   bool
	Version uint64
	// Staleness bounds how far behind the serving replica may have been (0: it had just
	// confirmed it was up to date).
	Staleness time.Duration
	// Node served the read.
	Node uint64
}

// GetStale reads key from the nearest replica (this node's, if it has one) without a consensus
// round, provided that replica was confirmed up to date at most maxStaleness ago; otherwise
// the replica confirms first. It works on any range; Get uses it on Eventual ones.
func (db *DB) GetStale(ctx context.Context, key []byte, maxStaleness time.Duration) (StaleRead, error) {
	if err := base.CheckKey(key); err != nil {
		return StaleRead{}, err
	}
	if err := db.checkOpen(); err != nil {
		return StaleRead{}, err
	}
	if maxStaleness < 0 {
		return StaleRead{}, fmt.Errorf("%w: negative staleness bound", ErrInvalidOptions)
	}
	for {
		v, err := db.node.StaleGet(ctx, key, maxStaleness)
		if err != nil {
			return StaleRead{}, fmt.Errorf("bondkv: get: %w", err)
		}
		if v.Intent != nil && v.Intent.Kind != store.IntentLock {
			// A transaction holds the key: if it committed, its write is resolved and read
			// (the replica has applied the resolution once it returns); if it is pending,
			// the committed value stands.
			done, err := db.resolveIntent(ctx, key, *v.Intent, false)
			if err != nil && !errors.Is(err, ErrAmbiguous) {
				return StaleRead{}, err
			}
			if done || err != nil {
				if err := base.Sleep(ctx, time.Millisecond); err != nil {
					return StaleRead{}, err
				}
				continue
			}
		}
		return StaleRead{Value: v.Value, Found: v.Value != nil, Version: v.Version, Staleness: v.Behind, Node: uint64(v.Node)}, nil
	}
}

// GetVersion returns key's value and version, linearizably. For a key without a value it
// returns ErrNotFound and the version to pass to PutIfVersion (0 if the key was never written).
func (db *DB) GetVersion(ctx context.Context, key []byte) ([]byte, uint64, error) {
	if err := base.CheckKey(key); err != nil {
		return nil, 0, err
	}
	if err := db.checkOpen(); err != nil {
		return nil, 0, err
	}
	v, err := db.txnGet(ctx, key, store.TxnID{}, true, false)
	if err != nil {
		return nil, 0, err
	}
	if !v.Live {
		return nil, v.Version, ErrNotFound
	}
	return v.Value, v.Version, nil
}

// PutIfVersion writes value to key only if the key's version is still version (as returned
// by GetVersion): optimistic locking. Otherwise it returns ErrVersionMismatch and writes nothing.
func (db *DB) PutIfVersion(ctx context.Context, key, value []byte, version uint64) error {
	if err := base.CheckKey(key); err != nil {
		return err
	}
	if err := base.CheckValue(value); err != nil {
		return err
	}
	if err := db.checkOpen(); err != nil {
		return err
	}
	args := store.TxnArgs{Reads: []store.TxnRead{{Key: key, Version: version}}, Writes: []store.TxnWrite{{Key: key, Value: value}}}
	if _, err := rand.Read(args.Txn[:]); err != nil {
		return err
	}
	for {
		err := db.node.Write(ctx, key, []store.Command{store.TxnCommand(store.OpTxnCommit, args)})
		var cf *shard.ConflictError
		if errors.As(err, &cf) {
			if cf.Conflict.Txn.IsZero() {
				return fmt.Errorf("%w: key %q: %s", ErrVersionMismatch, key, cf.Conflict.Reason)
			}
			in := store.Intent{Txn: cf.Conflict.Txn, Anchor: cf.Conflict.Anchor}
			if _, err := db.resolveIntent(ctx, key, in, true); err != nil {
				return fmt.Errorf("bondkv: put if version: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("bondkv: put if version: %w", err)
		}
		return nil
	}
}

// MergeCounter adds delta to the counter stored at key (absent: 0) inside the replicated state
// machine: concurrent adds never lose one another. Read it with DecodeCounter.
func (db *DB) MergeCounter(ctx context.Context, key []byte, delta int64) error {
	return db.merge(ctx, key, store.MergeCounter, binary.BigEndian.AppendUint64(nil, uint64(delta)))
}

// MergeSet adds elems to the set stored at key (absent: empty). Read it with DecodeSet.
func (db *DB) MergeSet(ctx context.Context, key []byte, elems ...[]byte) error {
	return db.merge(ctx, key, store.MergeSet, store.EncodeSet(elems))
}

// MergeLWW writes value to key unless the key holds a value written by MergeLWW with a later
// timestamp (last writer wins, ties broken by the larger value), so writers that disagree
// converge whatever order their writes apply in. Read it with DecodeLWW.
func (db *DB) MergeLWW(ctx context.Context, key []byte, ts time.Time, value []byte) error {
	op := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), uint64(ts.UnixNano()))
	return db.merge(ctx, key, store.MergeLWW, append(op, value...))
}

func (db *DB) merge(ctx context.Context, key []byte, f store.MergeFunc, operand []byte) error {
	if err := base.CheckKey(key); err != nil {
		return err
	}
	if err := base.CheckValue(operand); err != nil {
		return err
	}
	return db.write(ctx, store.MergeValueCommand(key, f, operand))
}

// DecodeCounter decodes a MergeCounter value.
func DecodeCounter(v []byte) (int64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: a counter is 8 bytes, not %d", ErrCorruption, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// DecodeSet decodes a MergeSet value into its elements, sorted.
func DecodeSet(v []byte) ([][]byte, error) { return store.DecodeSet(v) }

// DecodeLWW decodes a MergeLWW value into its timestamp and value.
func DecodeLWW(v []byte) (time.Time, []byte, error) {
	if len(v) < 8 {
		return time.Time{}, nil, fmt.Errorf("%w: a last-writer-wins value has an 8-byte timestamp", ErrCorruption)
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))), v[8:], nil
}
