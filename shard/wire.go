package shard

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/store"
)

// RPC methods of the node service. Requests and responses are JSON; errors a caller must act
// on travel inside the response (wireErr), not as transport errors.
const (
	methodPropose    = "kv.propose"
	methodRead       = "kv.read"
	methodRangeInfo  = "range.info"
	methodStart      = "range.start"
	methodDestroy    = "range.destroy"
	methodChange     = "range.change"
	methodLocateMeta = "meta.locate"
)

// Error kinds carried by wireErr.
const (
	kindMoved     = "moved"
	kindFrozen    = "frozen"
	kindNotFound  = "not_found"
	kindClosed    = "closed"
	kindAmbiguous = "ambiguous"
	kindCondition = "condition_failed"
	kindInvalid   = "invalid"
	kindConflict  = "conflict"
	kindOther     = "other"
)

type wireErr struct {
	Kind string      `json:"kind"`
	Msg  string      `json:"msg"`
	Desc *Descriptor `json:"desc,omitempty"`
	// Conflict describes a kindConflict.
	Conflict *wireConflict `json:"conflict,omitempty"`
}

type wireConflict struct {
	Key    []byte `json:"k"`
	Txn    []byte `json:"txn,omitempty"`
	Anchor []byte `json:"anchor,omitempty"`
	Reason string `json:"reason"`
}

// ErrConditionFailed is returned when a conditional write finds another value.
var ErrConditionFailed = errors.New("bondkv: condition failed")

func toWire(err error) *wireErr {
	if err == nil {
		return nil
	}
	w := &wireErr{Kind: kindOther, Msg: err.Error()}
	var moved *RangeMovedError
	var conflict *ConflictError
	switch {
	case errors.As(err, &conflict):
		c := conflict.Conflict
		w.Kind = kindConflict
		w.Conflict = &wireConflict{Key: c.Key, Anchor: c.Anchor, Reason: c.Reason}
		if !c.Txn.IsZero() {
			w.Conflict.Txn = c.Txn[:]
		}
	case errors.As(err, &moved):
		w.Kind, w.Desc = kindMoved, moved.Desc
	case errors.Is(err, errFrozen):
		w.Kind = kindFrozen
	case errors.Is(err, base.ErrNotFound):
		w.Kind = kindNotFound
	case errors.Is(err, base.ErrClosed):
		w.Kind = kindClosed
	case errors.Is(err, base.ErrAmbiguous):
		w.Kind = kindAmbiguous
	case errors.Is(err, ErrConditionFailed):
		w.Kind = kindCondition
	case errors.Is(err, base.ErrInvalidRange), errors.Is(err, base.ErrKeyTooLarge),
		errors.Is(err, base.ErrValueTooLarge), errors.Is(err, base.ErrEmptyKey):
		w.Kind = kindInvalid
	}
	return w
}

// remoteError turns a wireErr from node back into an error matching the same sentinels.
func (w *wireErr) err(node base.NodeID) error {
	if w == nil {
		return nil
	}
	switch w.Kind {
	case kindMoved:
		return &RangeMovedError{Desc: w.Desc, Reason: fmt.Sprintf("node %d: %s", node, w.Msg)}
	case kindFrozen:
		return fmt.Errorf("node %d: %w", node, errFrozen)
	case kindNotFound:
		return base.ErrNotFound
	case kindClosed:
		// The remote node is shutting down: to the caller that node is unavailable.
		return fmt.Errorf("node %d: %s: %w", node, w.Msg, errNodeUnavailable)
	case kindAmbiguous:
		return fmt.Errorf("node %d: %s: %w", node, w.Msg, base.ErrAmbiguous)
	case kindCondition:
		return fmt.Errorf("node %d: %w", node, ErrConditionFailed)
	case kindConflict:
		if w.Conflict == nil || len(w.Conflict.Txn) != 0 && len(w.Conflict.Txn) != len(store.TxnID{}) {
			return fmt.Errorf("node %d: conflict: %w", node, base.ErrCorruption)
		}
		c := store.Conflict{Key: w.Conflict.Key, Anchor: w.Conflict.Anchor, Reason: w.Conflict.Reason}
		copy(c.Txn[:], w.Conflict.Txn)
		return &ConflictError{Conflict: c}
	case kindInvalid:
		return fmt.Errorf("node %d: %s: %w", node, w.Msg, base.ErrInvalidRange)
	}
	return fmt.Errorf("node %d: %s", node, w.Msg)
}

// errNodeUnavailable: the request certainly did not run on that node; another replica may be tried.
var errNodeUnavailable = errors.New("shard: node unavailable")

type wireCmd struct {
	Op           store.Op `json:"op"`
	Key          []byte   `json:"k,omitempty"`
	Value        []byte   `json:"v,omitempty"`
	Expect       []byte   `json:"e,omitempty"`
	ExpectAbsent bool     `json:"ea,omitempty"`
}

func toWireCmds(cmds []store.Command) []wireCmd {
	out := make([]wireCmd, len(cmds))
	for i, c := range cmds {
		out[i] = wireCmd{Op: c.Op, Key: c.Key, Value: c.Value, Expect: c.Expect, ExpectAbsent: c.ExpectAbsent}
	}
	return out
}

func fromWireCmds(ws []wireCmd) []store.Command {
	out := make([]store.Command, len(ws))
	for i, c := range ws {
		out[i] = store.Command{Op: c.Op, Key: c.Key, Value: c.Value, Expect: c.Expect, ExpectAbsent: c.ExpectAbsent}
	}
	return out
}

type proposeReq struct {
	Range base.RangeID `json:"range"`
	Cmds  []wireCmd    `json:"cmds"`
}

type proposeResp struct {
	Err *wireErr `json:"err,omitempty"`
}

// Read kinds.
const (
	readLocalGet  = "local_get"
	readLocalScan = "local_scan"
	// readTxnGet returns the key's record (tombstones included) and intent; readTxnScan the
	// span's live records and the intents in the part of the span the scan covered.
	readTxnGet  = "txn_get"
	readTxnScan = "txn_scan"
	// readStaleGet is a get served by the replica that receives it, at most MaxStaleness
	// behind.
	readStaleGet = "stale_get"
)

type readReq struct {
	Range base.RangeID `json:"range"`
	Kind  string       `json:"kind"`
	Key   []byte       `json:"key,omitempty"`
	Start []byte       `json:"start,omitempty"`
	End   []byte       `json:"end,omitempty"`
	Limit int          `json:"limit,omitempty"`
	// MaxStaleness bounds a readStaleGet (nanoseconds).
	MaxStaleness int64 `json:"max_stale,omitempty"`
	// Local serves a transactional read from the receiving replica as it is, without a
	// ReadIndex round (the transaction validates it when it commits).
	Local bool `json:"local,omitempty"`
}

type wireKV struct {
	Key     []byte `json:"k"`
	Value   []byte `json:"v"`
	Version uint64 `json:"ver"`
	// Transactional reads: Deleted marks a tombstone, NoRecord a key without a record, Intent
	// is the key's encoded intent.
	Deleted  bool   `json:"del,omitempty"`
	NoRecord bool   `json:"norec,omitempty"`
	Intent   []byte `json:"intent,omitempty"`
	// A readStaleGet's answer: how far behind the replica may be (nanoseconds), and its node.
	Behind int64       `json:"behind,omitempty"`
	Node   base.NodeID `json:"node,omitempty"`
}

type readResp struct {
	KVs []wireKV `json:"kvs,omitempty"`
	Err *wireErr `json:"err,omitempty"`
}

type rangeInfoReq struct {
	Range base.RangeID `json:"range"`
	// Sync asks the node to make everything it applied durable before answering (merges).
	Sync bool `json:"sync,omitempty"`
	// Membership asks for the range's membership, read linearizably.
	Membership bool `json:"membership,omitempty"`
}

// RangeInfo is what one node knows of its replica of a range.
type RangeInfo struct {
	Node      base.NodeID            `json:"node"`
	Running   bool                   `json:"running"`
	Leader    base.NodeID            `json:"leader"`
	NonVoting bool                   `json:"non_voting"`
	Applied   uint64                 `json:"applied"`
	Version   uint64                 `json:"version"`
	HasState  bool                   `json:"has_state"`
	Span      base.Span              `json:"span"`
	Gen       uint64                 `json:"gen"`
	Frozen    bool                   `json:"frozen"`
	Voters    map[base.NodeID]string `json:"voters,omitempty"`
	// ReplicaIDs are the members' replica IDs (voters; with Membership, non-voting too).
	ReplicaIDs map[base.NodeID]uint64 `json:"replica_ids,omitempty"`
	// With rangeInfoReq.Membership: the non-voting members and the removed replica IDs too.
	NonVotingMembers map[base.NodeID]string `json:"non_voting_members,omitempty"`
	RemovedIDs       map[uint64]bool        `json:"removed_ids,omitempty"`
	Size             uint64                 `json:"size"`
	Err              *wireErr               `json:"err,omitempty"`
}

type startReq struct {
	Range     base.RangeID `json:"range"`
	ReplicaID uint64       `json:"replica_id,omitempty"`
	NonVoting bool         `json:"non_voting"`
}

type changeReq struct {
	Range base.RangeID `json:"range"`
	Op    string       `json:"op"` // add_non_voting, promote, remove, transfer, compact
	Node  base.NodeID  `json:"node"`
	Addr  string       `json:"addr"`
}

type simpleResp struct {
	// ReplicaID is the replica ID an add_non_voting change gave the node.
	ReplicaID uint64   `json:"replica_id,omitempty"`
	Err       *wireErr `json:"err,omitempty"`
}

type locateResp struct {
	// Meta are the meta range's voters as this node knows them (node → address).
	Meta map[base.NodeID]string `json:"meta"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("shard: encode %T: %v", v, err))
	}
	return b
}
