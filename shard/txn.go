package shard

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/store"
)

// ConflictError is returned when a write or a transaction command did not apply because of
// Conflict: another transaction's intent holds a key (Conflict.Txn set), or a read version or
// scan changed. Nothing of the command was applied. It matches ErrConditionFailed.
type ConflictError struct {
	Conflict store.Conflict
}

func (e *ConflictError) Error() string { return "shard: conflict: " + e.Conflict.String() }

// Unwrap makes a ConflictError match ErrConditionFailed.
func (e *ConflictError) Unwrap() error { return ErrConditionFailed }

// TxnValue is what a transactional read of one key saw.
type TxnValue struct {
	Key []byte
	// Version is the committed record's version (0: the key has no record at all).
	Version uint64
	// Live reports a live value (not absent, not deleted).
	Live  bool
	Value []byte
	// Intent is the key's intent, if another transaction holds it.
	Intent *store.Intent
}

// TxnGet reads key's committed record and intent at one instant, linearizably; with local set,
// from the replica that serves it as that replica has it (possibly behind).
func (n *Node) TxnGet(ctx context.Context, key []byte, local bool) (TxnValue, error) {
	var out TxnValue
	err := n.withKey(ctx, key, func(ctx context.Context, d *Descriptor) error {
		kvs, err := n.read(ctx, d.RangeID, readReq{Range: d.RangeID, Kind: readTxnGet, Key: key, Local: local})
		if err != nil {
			return err
		}
		if len(kvs) != 1 {
			return fmt.Errorf("shard: transactional get: %d answers: %w", len(kvs), base.ErrCorruption)
		}
		kv := kvs[0]
		out = TxnValue{Key: key, Version: kv.Version, Live: !kv.NoRecord && !kv.Deleted, Value: kv.Value}
		if kv.NoRecord {
			out.Version = 0
		}
		if out.Live && out.Value == nil {
			out.Value = []byte{}
		}
		if kv.Intent != nil {
			in, err := store.DecodeIntent(kv.Intent)
			if err != nil {
				return err
			}
			out.Intent = &in
		}
		return nil
	})
	return out, err
}

// ScanPart is the part of a transactional scan served by one range.
type ScanPart struct {
	Range base.RangeID
	// Span is the part of the scanned span this range covered, and Limit the limit it was read
	// with (0: none): the commit recomputes the same digest over them.
	Span    base.Span
	Limit   int
	KVs     []store.KV
	Intents []store.KeyIntent
}

// TxnScan scans span range by range (each part linearizable, with the intents it met, or with
// local set as the serving replica has it), up to limit live keys (<= 0: all).
func (n *Node) TxnScan(ctx context.Context, span base.Span, limit int, local bool) ([]ScanPart, error) {
	var parts []ScanPart
	total := 0
	cur := span.Start
	if cur == nil {
		cur = []byte{}
	}
	for {
		var part ScanPart
		var end []byte
		err := n.withKey(ctx, cur, func(ctx context.Context, d *Descriptor) error {
			end = d.End
			sub := base.Span{Start: cur, End: span.End}
			if d.End != nil && (span.End == nil || bytes.Compare(d.End, span.End) < 0) {
				sub.End = d.End
			}
			left := 0
			if limit > 0 {
				left = limit - total
			}
			kvs, err := n.read(ctx, d.RangeID, readReq{Range: d.RangeID, Kind: readTxnScan, Start: sub.Start, End: sub.End, Limit: left, Local: local})
			if err != nil {
				return err
			}
			part = ScanPart{Range: d.RangeID, Span: sub, Limit: left}
			for _, kv := range kvs {
				if kv.Intent != nil {
					in, err := store.DecodeIntent(kv.Intent)
					if err != nil {
						return err
					}
					part.Intents = append(part.Intents, store.KeyIntent{Key: kv.Key, Intent: in})
					continue
				}
				data := kv.Value
				if data == nil {
					data = []byte{}
				}
				part.KVs = append(part.KVs, store.KV{Key: kv.Key, Value: store.Value{Version: kv.Version, Data: data}})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		parts = append(parts, part)
		total += len(part.KVs)
		if limit > 0 && total >= limit || end == nil || span.End != nil && bytes.Compare(end, span.End) >= 0 {
			return parts, nil
		}
		cur = end
	}
}

// Locate returns the descriptor of the range holding key; refresh bypasses the cache.
func (n *Node) Locate(ctx context.Context, key []byte, refresh bool) (*Descriptor, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	return n.lookup(ctx, key, refresh)
}

// ProposeTo replicates cmds through range id (locally or forwarded), without re-routing: a
// RangeMovedError means the range no longer holds some key, and the caller regroups its keys.
func (n *Node) ProposeTo(ctx context.Context, id base.RangeID, cmds []store.Command) error {
	_, err := n.propose(ctx, id, cmds)
	return err
}

// StaleValue is the answer of a bounded-staleness read.
type StaleValue struct {
	Value   []byte // nil: no live value
	Version uint64
	// Behind bounds how far the serving replica's state may lag (0: read after a ReadIndex).
	Behind time.Duration
	// Node is the node whose replica served the read.
	Node base.NodeID
	// Intent is the key's intent as that replica has it.
	Intent *store.Intent
}

// StaleGet reads key from this node's replica if it has one, otherwise from another replica,
// at most maxStaleness behind.
func (n *Node) StaleGet(ctx context.Context, key []byte, maxStaleness time.Duration) (StaleValue, error) {
	var out StaleValue
	err := n.withKey(ctx, key, func(ctx context.Context, d *Descriptor) error {
		kvs, err := n.read(ctx, d.RangeID, readReq{Range: d.RangeID, Kind: readStaleGet, Key: key, MaxStaleness: int64(maxStaleness)})
		if err != nil {
			return err
		}
		if len(kvs) != 1 {
			return fmt.Errorf("shard: stale get: %d answers: %w", len(kvs), base.ErrCorruption)
		}
		kv := kvs[0]
		out = StaleValue{Version: kv.Version, Behind: time.Duration(kv.Behind), Node: kv.Node}
		if !kv.NoRecord && !kv.Deleted {
			out.Value = kv.Value
			if out.Value == nil {
				out.Value = []byte{}
			}
		}
		if kv.Intent != nil {
			in, err := store.DecodeIntent(kv.Intent)
			if err != nil {
				return err
			}
			out.Intent = &in
		}
		return nil
	})
	return out, err
}

// CachedPolicy returns the policy of the range holding key as this node's descriptor cache
// has it (false: not cached).
func (n *Node) CachedPolicy(key []byte) (Policy, bool) {
	d := n.cache.lookup(key)
	if d == nil {
		return Policy{}, false
	}
	return d.Policy, true
}
