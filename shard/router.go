package shard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/internal/rpc"
	"github.com/bondkv/bondkv/raftgroup"
	"github.com/bondkv/bondkv/store"
)

// rangeCache is a node's routing cache: the descriptors it last read from the meta range, kept
// as a sorted list of non-overlapping spans (of overlapping descriptors the highest generation
// wins), plus leader hints.
type rangeCache struct {
	mu       sync.RWMutex
	byID     map[base.RangeID]*Descriptor
	sorted   []*Descriptor // user ranges, non-overlapping, by Start
	leaders  map[base.RangeID]base.NodeID
	refresh  sync.Mutex
	loadedAt time.Time
}

func newRangeCache() *rangeCache {
	return &rangeCache{byID: make(map[base.RangeID]*Descriptor), leaders: make(map[base.RangeID]base.NodeID)}
}

func (c *rangeCache) replaceAll(ds []*Descriptor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byID = make(map[base.RangeID]*Descriptor, len(ds))
	for _, d := range ds {
		c.byID[d.RangeID] = d
	}
	c.rebuildLocked()
	c.loadedAt = time.Now()
}

func (c *rangeCache) loadedAfter(t time.Time) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.loadedAt.After(t)
}

func (c *rangeCache) put(d *Descriptor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.byID[d.RangeID]; ok && old.Generation > d.Generation {
		return
	}
	c.byID[d.RangeID] = d.Clone()
	c.rebuildLocked()
}

func (c *rangeCache) remove(id base.RangeID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byID, id)
	c.rebuildLocked()
}

// rebuildLocked resolves overlaps: descriptors are taken by descending generation and kept if
// they overlap none kept before.
func (c *rangeCache) rebuildLocked() {
	all := make([]*Descriptor, 0, len(c.byID))
	for _, d := range c.byID {
		if !d.isSystem() {
			all = append(all, d)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Generation != all[j].Generation {
			return all[i].Generation > all[j].Generation
		}
		return all[i].RangeID < all[j].RangeID
	})
	var kept []*Descriptor
	for _, d := range all {
		i := sort.Search(len(kept), func(i int) bool { return bytes.Compare(kept[i].Start, d.Start) > 0 })
		if i > 0 && kept[i-1].Span().Overlaps(d.Span()) || i < len(kept) && kept[i].Span().Overlaps(d.Span()) {
			continue
		}
		kept = append(kept, nil)
		copy(kept[i+1:], kept[i:])
		kept[i] = d
	}
	c.sorted = kept
}

func (c *rangeCache) lookup(key []byte) *Descriptor {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i := sort.Search(len(c.sorted), func(i int) bool { return bytes.Compare(c.sorted[i].Start, key) > 0 })
	if i == 0 {
		return nil
	}
	if d := c.sorted[i-1]; d.ContainsKey(key) {
		return d
	}
	return nil
}

func (c *rangeCache) get(id base.RangeID) *Descriptor {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byID[id]
}

func (c *rangeCache) all() []*Descriptor {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Descriptor, 0, len(c.byID))
	if d := c.byID[base.MetaRangeID]; d != nil {
		out = append(out, d)
	}
	return append(out, c.sorted...)
}

func (c *rangeCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.sorted)
}

func (c *rangeCache) setLeader(id base.RangeID, node base.NodeID) {
	c.mu.Lock()
	c.leaders[id] = node
	c.mu.Unlock()
}

func (c *rangeCache) leader(id base.RangeID) base.NodeID {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.leaders[id]
}

// lookup returns the descriptor of the range holding key, from the cache unless force.
func (n *Node) lookup(ctx context.Context, key []byte, force bool) (*Descriptor, error) {
	if !force {
		if d := n.cache.lookup(key); d != nil {
			return d, nil
		}
	}
	asked := time.Now()
	n.cache.refresh.Lock()
	// Another caller may have refreshed while this one waited: one meta read serves them all.
	var err error
	if !n.cache.loadedAfter(asked) {
		_, err = n.Descriptors(ctx)
	}
	n.cache.refresh.Unlock()
	if err != nil {
		return nil, err
	}
	if d := n.cache.lookup(key); d != nil {
		return d, nil
	}
	return nil, fmt.Errorf("shard: no range holds key %q (meta has %d ranges)", key, n.cache.len())
}

// retryable reports errors after which a request may go to the range again (nothing applied).
func retryable(err error) bool {
	return errors.Is(err, ErrRangeMoved) || errors.Is(err, errFrozen) || errors.Is(err, ErrNoQuorum)
}

// withKey runs fn against the range holding key, re-routing after a move, a freeze or an
// unreachable range until ctx ends.
func (n *Node) withKey(ctx context.Context, key []byte, fn func(ctx context.Context, d *Descriptor) error) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	force := false
	for attempt := 0; ; attempt++ {
		d, err := n.lookup(ctx, key, force)
		if err == nil {
			err = fn(ctx, d)
			if err == nil || !retryable(err) {
				return err
			}
		}
		force = true
		wait := time.Duration(attempt) * 10 * time.Millisecond
		if wait > 200*time.Millisecond {
			wait = 200 * time.Millisecond
		}
		if perr := base.Sleep(ctx, wait); perr != nil {
			return fmt.Errorf("%w (last attempt: %w)", perr, err)
		}
	}
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, raftgroup.DefaultTimeout)
}

// Write applies cmds, whose keys must all belong to the range holding key.
func (n *Node) Write(ctx context.Context, key []byte, cmds []store.Command) error {
	return n.withKey(ctx, key, func(ctx context.Context, d *Descriptor) error {
		_, err := n.propose(ctx, d.RangeID, cmds)
		return err
	})
}

// propose replicates cmds through range id: on the local replica if this node has one,
// otherwise forwarded to a node that has.
func (n *Node) propose(ctx context.Context, id base.RangeID, cmds []store.Command) (store.Result, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if n.preferLocal(id) {
		res, err := n.proposeLocal(ctx, id, cmds)
		var moved *RangeMovedError
		if !errors.As(err, &moved) || moved.Desc != nil {
			return res, err
		}
		// The local replica went away under the write (removed or merged): it did not apply
		// there, so another replica may take it.
	}
	req := mustJSON(proposeReq{Range: id, Cmds: toWireCmds(cmds)})
	var res store.Result
	err := n.forward(ctx, id, methodPropose, req, func(node base.NodeID, raw []byte) error {
		var resp proposeResp
		if err := json.Unmarshal(raw, &resp); err != nil {
			return fmt.Errorf("shard: node %d: propose response: %w", node, base.ErrCorruption)
		}
		res.Code = store.ResultApplied
		return resp.Err.err(node)
	}, true)
	if errors.Is(err, ErrNoQuorum) && n.host.Running(id) {
		// Nobody else answered (peers still starting, say): the local replica waits for a
		// leader itself.
		return n.proposeLocal(ctx, id, cmds)
	}
	return res, err
}

// localUsable reports whether this node's replica of id can serve requests: it runs and holds
// the range's state (a joining replica gets it with its first snapshot). Without a known leader
// the replica waits for one (raftgroup does), which is better than forwarding to a node that
// may be the very leader that was lost.
func (n *Node) localUsable(id base.RangeID) bool {
	if !n.host.Running(id) {
		return false
	}
	_, ok, err := n.engine.RangeState(id)
	return err == nil && ok
}

// preferLocal reports whether a request for range id should go to this node's replica: it is
// usable, or it runs and there is nobody to forward to (a new single-node cluster electing
// its first leader).
func (n *Node) preferLocal(id base.RangeID) bool {
	if n.localUsable(id) {
		return true
	}
	return n.host.Running(id) && len(n.targets(id)) == 0
}

// proposeLocal proposes on this node's replica and maps the result to errors.
func (n *Node) proposeLocal(ctx context.Context, id base.RangeID, cmds []store.Command) (store.Result, error) {
	res, err := n.host.Propose(ctx, id, cmds)
	if err != nil {
		if errors.Is(err, base.ErrAmbiguous) && ctx.Err() == nil && n.wasMerged(id) {
			// This replica applied everything up to the freeze before the merge, and answered
			// every entry of this node at or below it; an entry still open lies after the
			// freeze, where it can only be refused. So it did not apply.
			return res, &RangeMovedError{Reason: fmt.Sprintf("range %d was merged while the write was in flight", id)}
		}
		if errors.Is(err, raftgroup.ErrNoReplica) {
			return res, &RangeMovedError{Reason: fmt.Sprintf("node %d holds no replica of range %d", n.cfg.NodeID, id)}
		}
		return res, err
	}
	switch res.Code {
	case store.ResultApplied:
		if len(res.Conflicts) > 0 {
			return res, &ConflictError{Conflict: res.Conflicts[0]}
		}
		return res, nil
	case store.ResultOutOfSpan:
		return res, n.movedErr(id, "key outside the range")
	case store.ResultFrozen:
		return res, fmt.Errorf("range %d: %w", id, errFrozen)
	case store.ResultConditionFailed:
		if len(res.Conflicts) > 0 {
			return res, &ConflictError{Conflict: res.Conflicts[0]}
		}
		return res, fmt.Errorf("range %d: %w", id, ErrConditionFailed)
	case store.ResultRejected:
		return res, fmt.Errorf("range %d: %w", id, errRejected)
	}
	return res, fmt.Errorf("range %d: unexpected result %s", id, res.Code)
}

// errRejected: the range applied the entry as rejected (an admin command that no longer fits
// the range, e.g. a split at a key that is already a boundary).
var errRejected = errors.New("shard: command rejected by the range")

// movedErr builds a RangeMovedError from this node's state of range id.
func (n *Node) movedErr(id base.RangeID, reason string) error {
	st, ok, err := n.engine.RangeState(id)
	if err != nil || !ok {
		return &RangeMovedError{Reason: reason}
	}
	return &RangeMovedError{Reason: reason, Desc: &Descriptor{RangeID: id, Start: st.Span.Start, End: st.Span.End, Generation: st.Generation}}
}

// read serves req on range id: locally if this node has a replica, otherwise forwarded.
func (n *Node) read(ctx context.Context, id base.RangeID, req readReq) ([]wireKV, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if n.preferLocal(id) {
		kvs, err := n.readLocal(ctx, req)
		var moved *RangeMovedError
		if !errors.As(err, &moved) || moved.Desc != nil {
			return kvs, err
		}
	}
	var out []wireKV
	err := n.forward(ctx, id, methodRead, mustJSON(req), func(node base.NodeID, raw []byte) error {
		var resp readResp
		if err := json.Unmarshal(raw, &resp); err != nil {
			return fmt.Errorf("shard: node %d: read response: %w", node, base.ErrCorruption)
		}
		out = resp.KVs
		return resp.Err.err(node)
	}, false)
	if errors.Is(err, ErrNoQuorum) && n.host.Running(id) {
		return n.readLocal(ctx, req)
	}
	return out, err
}

func (n *Node) readLocal(ctx context.Context, req readReq) ([]wireKV, error) {
	if req.Kind == readStaleGet {
		get := req
		get.Kind = readTxnGet // with the key's intent, which the caller resolves if need be
		v, behind, err := n.host.StaleRead(ctx, req.Range, time.Duration(req.MaxStaleness), func(e *store.Engine) (any, error) { return execRead(e, get) })
		if err != nil {
			if errors.Is(err, raftgroup.ErrNoReplica) {
				return nil, &RangeMovedError{Reason: fmt.Sprintf("node %d holds no replica of range %d", n.cfg.NodeID, req.Range)}
			}
			return nil, err
		}
		kvs := v.([]wireKV)
		if len(kvs) == 0 {
			kvs = []wireKV{{Key: req.Key, NoRecord: true}}
		}
		kvs[0].Behind, kvs[0].Node = int64(behind), n.cfg.NodeID
		return kvs, nil
	}
	read := n.host.Read
	if req.Local && (req.Kind == readTxnGet || req.Kind == readTxnScan) {
		read = n.host.LocalRead
	}
	v, err := read(ctx, req.Range, func(e *store.Engine) (any, error) { return execRead(e, req) })
	if err != nil {
		if errors.Is(err, raftgroup.ErrNoReplica) {
			return nil, &RangeMovedError{Reason: fmt.Sprintf("node %d holds no replica of range %d", n.cfg.NodeID, req.Range)}
		}
		return nil, err
	}
	return v.([]wireKV), nil
}

// execRead runs a read on the local replica after its ReadIndex round.
func execRead(e *store.Engine, req readReq) ([]wireKV, error) {
	st, ok, err := e.RangeState(req.Range)
	if err != nil {
		return nil, err
	}
	moved := func(reason string) error {
		if !ok {
			return &RangeMovedError{Reason: reason}
		}
		return &RangeMovedError{Reason: reason, Desc: &Descriptor{RangeID: req.Range, Start: st.Span.Start, End: st.Span.End, Generation: st.Generation}}
	}
	if !ok {
		return nil, moved("the range has no state on this node")
	}
	switch req.Kind {
	case readTxnGet:
		if !st.Span.Contains(req.Key) || st.Span.Empty() {
			return nil, moved("key outside the range")
		}
		v, err := e.GetTxn(req.Key)
		if err != nil {
			return nil, err
		}
		kv := wireKV{Key: req.Key, Value: v.Record.Data, Version: v.Record.Version, Deleted: v.Record.Deleted, NoRecord: !v.Found}
		if v.Intent != nil {
			kv.Intent = store.EncodeIntent(*v.Intent)
		}
		return []wireKV{kv}, nil
	case readTxnScan:
		sub := base.Span{Start: req.Start, End: req.End}
		if !st.Span.Covers(sub) {
			return nil, moved("scan outside the range")
		}
		kvs, ins, err := e.ScanTxn(sub, req.Limit)
		if err != nil {
			return nil, err
		}
		out := make([]wireKV, 0, len(kvs)+len(ins))
		for _, kv := range kvs {
			out = append(out, wireKV{Key: kv.Key, Value: kv.Value.Data, Version: kv.Value.Version})
		}
		for _, ki := range ins {
			out = append(out, wireKV{Key: ki.Key, NoRecord: true, Intent: store.EncodeIntent(ki.Intent)})
		}
		return out, nil
	case readLocalGet:
		v, err := e.GetLocal(req.Range, req.Key)
		if errors.Is(err, base.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []wireKV{{Key: req.Key, Value: v.Data, Version: v.Version}}, nil
	case readLocalScan:
		kvs, err := e.ScanLocal(req.Range, req.Key, req.Limit)
		if err != nil {
			return nil, err
		}
		out := make([]wireKV, len(kvs))
		for i, kv := range kvs {
			out[i] = wireKV{Key: kv.Key, Value: kv.Value.Data, Version: kv.Value.Version}
		}
		return out, nil
	}
	return nil, fmt.Errorf("shard: unknown read kind %q", req.Kind)
}

// forward sends a request for range id to the nodes holding it, the known leader first, until
// one answers. A node that could not be reached, or that answers that it holds no replica, did
// not run the request, so the next is tried. handle decodes an answer and returns its error.
// For writes (write true) a call that fails after the request left is ambiguous.
func (n *Node) forward(ctx context.Context, id base.RangeID, method string, req []byte,
	handle func(node base.NodeID, raw []byte) error, write bool) error {
	err := n.forwardOnce(ctx, id, method, req, handle, write)
	if id == base.MetaRangeID && (errors.Is(err, ErrRangeMoved) || errors.Is(err, ErrNoQuorum)) && n.relocateMeta(ctx) {
		err = n.forwardOnce(ctx, id, method, req, handle, write)
	}
	return err
}

// relocateMeta asks every node this node knows where the meta range is now; it reports
// whether it learned anything.
func (n *Node) relocateMeta(ctx context.Context) bool {
	addrs := map[string]bool{}
	n.dirMu.Lock()
	for _, r := range n.directory {
		addrs[r.Addr] = true
	}
	for _, a := range n.metaAddrs {
		addrs[a] = true
	}
	n.dirMu.Unlock()
	for _, a := range n.cfg.Join {
		addrs[a] = true
	}
	delete(addrs, n.cfg.Addr)
	learned := false
	for a := range addrs {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		if n.learnMeta(cctx, a) == nil {
			learned = true
		}
		cancel()
	}
	return learned
}

func (n *Node) forwardOnce(ctx context.Context, id base.RangeID, method string, req []byte,
	handle func(node base.NodeID, raw []byte) error, write bool) error {
	targets := n.targets(id)
	if len(targets) == 0 {
		return &RangeMovedError{Reason: fmt.Sprintf("no known replica of range %d", id)}
	}
	n.forwarded.Add(1)
	var last error
	for _, t := range targets {
		raw, err := n.client.Call(ctx, t.addr, method, req)
		if err != nil {
			if errors.Is(err, rpc.ErrUnavailable) {
				last = fmt.Errorf("node %d: %w", t.node, err)
				continue
			}
			if write && !errors.Is(err, rpc.ErrUnknownMethod) {
				// The request may have reached the node: its outcome is unknown.
				return fmt.Errorf("range %d via node %d: %w: %w", id, t.node, base.ErrAmbiguous, err)
			}
			return fmt.Errorf("range %d via node %d: %w", id, t.node, err)
		}
		err = handle(t.node, raw)
		var moved *RangeMovedError
		if errors.As(err, &moved) && moved.Desc == nil || errors.Is(err, errNodeUnavailable) {
			last = err // that node holds no replica (any more): try the next
			continue
		}
		return err
	}
	if errors.Is(last, ErrRangeMoved) {
		return last
	}
	return fmt.Errorf("range %d: %w (last: %w)", id, ErrNoQuorum, last)
}

type target struct {
	node base.NodeID
	addr string
}

// targets lists the nodes to try for range id, the known leader first.
func (n *Node) targets(id base.RangeID) []target {
	var nodes []base.NodeID
	if id == base.MetaRangeID {
		for node := range n.metaVoters() {
			nodes = append(nodes, node)
		}
	}
	if d := n.cache.get(id); d != nil {
		for _, r := range d.Replicas {
			if !r.NonVoting {
				nodes = append(nodes, r.Node)
			}
		}
	}
	slices.Sort(nodes)
	nodes = slices.Compact(nodes)
	if l := n.cache.leader(id); l != 0 {
		for i, node := range nodes {
			if node == l {
				nodes[0], nodes[i] = nodes[i], nodes[0]
			}
		}
	}
	out := make([]target, 0, len(nodes))
	for _, node := range nodes {
		if node == n.cfg.NodeID {
			continue
		}
		if addr, ok := n.addrOf(node); ok {
			out = append(out, target{node, addr})
		}
	}
	return out
}
