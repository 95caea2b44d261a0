package shard

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/store"
)

// The meta range (range 1) keeps its records as range-local records (store.OpPutLocal):
//
//	desc/<rangeID BE8>  Descriptor (JSON)
//	node/<nodeID BE8>   NodeRecord (JSON)
//	live/<nodeID BE8>   Liveness (JSON)
//	next-range          the next unused RangeID, uint64 BE
var (
	descPrefix   = []byte("desc/")
	nodePrefix   = []byte("node/")
	livePrefix   = []byte("live/")
	nextRangeKey = []byte("next-range")
)

func idKey(prefix []byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), id)
}

func descKey(id base.RangeID) []byte { return idKey(descPrefix, uint64(id)) }
func nodeKey(id base.NodeID) []byte  { return idKey(nodePrefix, uint64(id)) }
func liveKey(id base.NodeID) []byte  { return idKey(livePrefix, uint64(id)) }

func encodeUint(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// metaPut writes a record to the meta range. A put is idempotent, so an attempt with an
// unknown outcome (a leadership change of the meta range, say) is simply repeated.
func (n *Node) metaPut(ctx context.Context, key, value []byte) error {
	for {
		_, err := n.propose(ctx, base.MetaRangeID, []store.Command{{Op: store.OpPutLocal, Key: key, Value: value}})
		if !errors.Is(err, base.ErrAmbiguous) || ctx.Err() != nil {
			return err
		}
	}
}

// metaDelete deletes a record of the meta range (idempotent, like metaPut).
func (n *Node) metaDelete(ctx context.Context, key []byte) error {
	for {
		_, err := n.propose(ctx, base.MetaRangeID, []store.Command{{Op: store.OpDeleteLocal, Key: key}})
		if !errors.Is(err, base.ErrAmbiguous) || ctx.Err() != nil {
			return err
		}
	}
}

// metaCPut writes key = value if its current value is expect (nil expect: if absent), else
// fails with ErrConditionFailed. An attempt with an unknown outcome is resolved by reading the
// record: value there means it applied (or an identical write did), expect there means it
// did not and it is tried again.
func (n *Node) metaCPut(ctx context.Context, key, value, expect []byte) error {
	c := store.Command{Op: store.OpCPutLocal, Key: key, Value: value, Expect: expect, ExpectAbsent: expect == nil}
	for {
		_, err := n.propose(ctx, base.MetaRangeID, []store.Command{c})
		if !errors.Is(err, base.ErrAmbiguous) || ctx.Err() != nil {
			return err
		}
		cur, rerr := n.metaGet(ctx, key)
		switch {
		case rerr != nil:
			return err
		case bytes.Equal(cur, value):
			return nil
		case !bytes.Equal(cur, expect) || (expect == nil) != (cur == nil):
			return fmt.Errorf("%w (after an attempt with an unknown outcome)", ErrConditionFailed)
		}
	}
}

// metaScan reads every meta record under prefix, linearizably.
func (n *Node) metaScan(ctx context.Context, prefix []byte) ([]wireKV, error) {
	return n.read(ctx, base.MetaRangeID, readReq{Range: base.MetaRangeID, Kind: readLocalScan, Key: prefix})
}

// metaGet reads one meta record (nil, nil if absent).
func (n *Node) metaGet(ctx context.Context, key []byte) ([]byte, error) {
	kvs, err := n.read(ctx, base.MetaRangeID, readReq{Range: base.MetaRangeID, Kind: readLocalGet, Key: key})
	if errors.Is(err, base.ErrNotFound) {
		return nil, nil
	}
	if err != nil || len(kvs) == 0 {
		return nil, err
	}
	return kvs[0].Value, nil
}

// Descriptors reads every range descriptor from the meta range, ordered by span start, keeping
// of overlapping descriptors only the highest generation; it refreshes the routing cache.
func (n *Node) Descriptors(ctx context.Context) ([]*Descriptor, error) {
	kvs, err := n.metaScan(ctx, descPrefix)
	if err != nil {
		return nil, fmt.Errorf("shard: read descriptors: %w", err)
	}
	all := make([]*Descriptor, 0, len(kvs))
	for _, kv := range kvs {
		d, err := decodeDescriptor(kv.Value)
		if err != nil {
			return nil, err
		}
		all = append(all, d)
	}
	n.cache.replaceAll(all)
	return n.cache.all(), nil
}

// allocRangeID reserves a new range ID.
func (n *Node) allocRangeID(ctx context.Context) (base.RangeID, error) {
	for {
		cur, err := n.metaGet(ctx, nextRangeKey)
		if err != nil {
			return 0, err
		}
		if len(cur) != 8 {
			return 0, fmt.Errorf("shard: next range id %x: %w", cur, base.ErrCorruption)
		}
		id := binary.BigEndian.Uint64(cur)
		err = n.metaCPut(ctx, nextRangeKey, encodeUint(id+1), cur)
		if err == nil {
			return base.RangeID(id), nil
		}
		if !errors.Is(err, ErrConditionFailed) {
			return 0, err
		}
	}
}

// publishDescriptor stores d in the meta range unless meta holds the same or a newer
// generation of it with the same content.
func (n *Node) publishDescriptor(ctx context.Context, d *Descriptor) error {
	for {
		cur, err := n.metaGet(ctx, descKey(d.RangeID))
		if err != nil {
			return err
		}
		if cur != nil {
			old, err := decodeDescriptor(cur)
			if err != nil {
				return err
			}
			if old.Generation > d.Generation {
				return nil
			}
			// Meta is the authority on the policy (SetPolicy writes it; a new range of a
			// split starts with its left neighbour's) and keeps the sticky bit.
			d.Policy = old.Policy
			d.Sticky = d.Sticky || old.Sticky && old.Generation == d.Generation
			if bytes.Equal(encodeDescriptor(d), cur) {
				n.cache.put(d)
				return nil
			}
		}
		err = n.metaCPut(ctx, descKey(d.RangeID), encodeDescriptor(d), cur)
		if err == nil {
			n.cache.put(d)
			return nil
		}
		if !errors.Is(err, ErrConditionFailed) {
			return err
		}
	}
}

// heartbeat writes this node's liveness record.
func (n *Node) heartbeat(ctx context.Context) error {
	l := Liveness{NodeID: n.cfg.NodeID, UnixNano: time.Now().UnixNano(), Leading: n.loads.snapshot()}
	l.Replicas = len(n.host.LocalReplicas())
	return n.metaPut(ctx, liveKey(n.cfg.NodeID), mustJSON(l))
}

// Nodes reads the node directory and liveness records.
func (n *Node) Nodes(ctx context.Context) (map[base.NodeID]NodeRecord, map[base.NodeID]Liveness, error) {
	kvs, err := n.metaScan(ctx, nodePrefix)
	if err != nil {
		return nil, nil, err
	}
	nodes := make(map[base.NodeID]NodeRecord, len(kvs))
	for _, kv := range kvs {
		var r NodeRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, nil, fmt.Errorf("shard: node record %q: %w", kv.Value, base.ErrCorruption)
		}
		nodes[r.NodeID] = r
	}
	kvs, err = n.metaScan(ctx, livePrefix)
	if err != nil {
		return nil, nil, err
	}
	live := make(map[base.NodeID]Liveness, len(kvs))
	for _, kv := range kvs {
		var l Liveness
		if err := json.Unmarshal(kv.Value, &l); err != nil {
			return nil, nil, fmt.Errorf("shard: liveness record %q: %w", kv.Value, base.ErrCorruption)
		}
		live[l.NodeID] = l
	}
	n.dirMu.Lock()
	n.directory = nodes
	n.dirMu.Unlock()
	return nodes, live, nil
}

// addrOf returns node's address from the directory cache (or the meta voters list).
func (n *Node) addrOf(node base.NodeID) (string, bool) {
	if node == n.cfg.NodeID {
		return n.cfg.Addr, true
	}
	n.dirMu.Lock()
	defer n.dirMu.Unlock()
	if r, ok := n.directory[node]; ok {
		return r.Addr, true
	}
	a, ok := n.metaAddrs[node]
	return a, ok
}

func (n *Node) haveMetaAddrs() bool {
	n.dirMu.Lock()
	defer n.dirMu.Unlock()
	return len(n.metaAddrs) > 0
}

// noteMetaFromLocal refreshes the meta voters from this node's own meta replica.
func (n *Node) noteMetaFromLocal() {
	for _, lr := range n.host.LocalReplicas() {
		if lr.Range == base.MetaRangeID && len(lr.Voters) > 0 {
			n.setMetaAddrs(lr.Voters)
		}
	}
}

func (n *Node) setMetaAddrs(m map[base.NodeID]string) {
	n.dirMu.Lock()
	changed := len(m) != len(n.metaAddrs)
	for id, a := range m {
		if n.metaAddrs[id] != a {
			changed = true
		}
	}
	if changed {
		n.metaAddrs = make(map[base.NodeID]string, len(m))
		for id, a := range m {
			n.metaAddrs[id] = a
		}
	}
	n.dirMu.Unlock()
	if changed {
		if err := n.engine.PutNodeLocal("meta-hint", mustJSON(m)); err != nil && !errors.Is(err, base.ErrClosed) {
			n.log.Warn("record meta location", "err", err)
		}
	}
}

// learnMeta asks the node at addr where the meta range is.
func (n *Node) learnMeta(ctx context.Context, addr string) error {
	raw, err := n.client.Call(ctx, addr, methodLocateMeta, nil)
	if err != nil {
		return err
	}
	var resp locateResp
	if err := json.Unmarshal(raw, &resp); err != nil {
		return fmt.Errorf("shard: locate meta at %s: %w", addr, base.ErrCorruption)
	}
	if len(resp.Meta) > 0 {
		n.setMetaAddrs(resp.Meta)
	}
	return nil
}

func (n *Node) metaVoters() map[base.NodeID]string {
	n.dirMu.Lock()
	defer n.dirMu.Unlock()
	out := make(map[base.NodeID]string, len(n.metaAddrs))
	for id, a := range n.metaAddrs {
		out[id] = a
	}
	return out
}

// SetPolicy sets the placement policy of the range holding key; the placement driver then
// moves its replicas to match. Ranges split from it inherit the policy.
func (n *Node) SetPolicy(ctx context.Context, key []byte, p Policy) error {
	if p.Replicas < 0 {
		return fmt.Errorf("shard: policy: %d replicas: %w", p.Replicas, base.ErrInvalidRange)
	}
	if p.Consistency > Eventual {
		return fmt.Errorf("shard: policy: unknown consistency %d: %w", p.Consistency, base.ErrInvalidRange)
	}
	return n.withKey(ctx, key, func(ctx context.Context, d *Descriptor) error {
		cur, err := n.metaGet(ctx, descKey(d.RangeID))
		if err != nil {
			return err
		}
		if cur == nil {
			return &RangeMovedError{Reason: fmt.Sprintf("range %d has no descriptor", d.RangeID)}
		}
		old, err := decodeDescriptor(cur)
		if err != nil {
			return err
		}
		if !old.ContainsKey(key) {
			return &RangeMovedError{Reason: "the range no longer holds the key", Desc: old}
		}
		nd := old.Clone()
		nd.Policy = p
		err = n.metaCPut(ctx, descKey(d.RangeID), encodeDescriptor(nd), cur)
		if errors.Is(err, ErrConditionFailed) {
			return &RangeMovedError{Reason: "descriptor changed", Desc: old} // re-read and retry
		}
		if err == nil {
			n.cache.put(nd)
		}
		return err
	})
}
