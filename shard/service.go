package shard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/internal/rpc"
	"github.com/bondkv/bondkv/raftgroup"
)

// registerHandlers installs the node service methods that serve other nodes.
func (n *Node) registerHandlers(s *rpc.Server) {
	s.Handle(methodPropose, n.servePropose)
	s.Handle(methodRead, n.serveRead)
	s.Handle(methodRangeInfo, n.serveRangeInfo)
	s.Handle(methodStart, n.serveStart)
	s.Handle(methodDestroy, n.serveDestroy)
	s.Handle(methodChange, n.serveChange)
	s.Handle(methodLocateMeta, n.serveLocateMeta)
}

func decodeReq(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("shard: malformed request: %w", base.ErrCorruption)
	}
	return nil
}

func (n *Node) servePropose(ctx context.Context, raw []byte) ([]byte, error) {
	var req proposeReq
	if err := decodeReq(raw, &req); err != nil {
		return nil, err
	}
	var err error
	if !n.host.Running(req.Range) {
		err = &RangeMovedError{Reason: fmt.Sprintf("node %d holds no replica of range %d", n.cfg.NodeID, req.Range)}
	} else {
		_, err = n.proposeLocal(ctx, req.Range, fromWireCmds(req.Cmds))
	}
	return mustJSON(proposeResp{Err: toWire(err)}), nil
}

func (n *Node) serveRead(ctx context.Context, raw []byte) ([]byte, error) {
	var req readReq
	if err := decodeReq(raw, &req); err != nil {
		return nil, err
	}
	var resp readResp
	if !n.host.Running(req.Range) {
		resp.Err = toWire(&RangeMovedError{Reason: fmt.Sprintf("node %d holds no replica of range %d", n.cfg.NodeID, req.Range)})
	} else {
		kvs, err := n.readLocal(ctx, req)
		resp.KVs, resp.Err = kvs, toWire(err)
	}
	return mustJSON(resp), nil
}

// localInfo describes this node's replica of id.
func (n *Node) localInfo(ctx context.Context, id base.RangeID, sync, membership bool) RangeInfo {
	info := RangeInfo{Node: n.cfg.NodeID, Running: n.host.Running(id)}
	if l, ok := n.host.Leader(id); ok {
		info.Leader = l
	}
	for _, lr := range n.host.LocalReplicas() {
		if lr.Range == id {
			info.NonVoting = lr.NonVoting
			info.Voters = lr.Voters
			info.ReplicaIDs = lr.ReplicaIDs
		}
	}
	if membership && info.Running {
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := n.host.Membership(mctx, id)
		cancel()
		if err != nil {
			info.Err = toWire(err)
			return info
		}
		info.Voters, info.NonVotingMembers, info.ReplicaIDs, info.RemovedIDs = m.Voters, m.NonVoting, m.ReplicaIDs, m.RemovedIDs
	}
	if sync {
		if err := n.engine.Sync(); err != nil {
			info.Err = toWire(err)
			return info
		}
	}
	st, ok, err := n.engine.RangeState(id)
	if err != nil {
		info.Err = toWire(err)
		return info
	}
	info.HasState = ok
	if ok {
		info.Span, info.Gen, info.Frozen = st.Span, st.Generation, st.Frozen
		info.Size, _ = n.engine.ApproximateSize(st.Span)
	}
	info.Applied, _ = n.engine.AppliedIndex(id)
	info.Version, _ = n.engine.RangeVersion(id)
	return info
}

func (n *Node) serveRangeInfo(ctx context.Context, raw []byte) ([]byte, error) {
	var req rangeInfoReq
	if err := decodeReq(raw, &req); err != nil {
		return nil, err
	}
	return mustJSON(n.localInfo(ctx, req.Range, req.Sync, req.Membership)), nil
}

func (n *Node) serveStart(_ context.Context, raw []byte) ([]byte, error) {
	var req startReq
	if err := decodeReq(raw, &req); err != nil {
		return nil, err
	}
	err := n.startJoining(req.Range, req.ReplicaID, req.NonVoting)
	return mustJSON(simpleResp{Err: toWire(err)}), nil
}

// startJoining starts this node's replica of a range it was just added to as replica rid.
func (n *Node) startJoining(id base.RangeID, rid uint64, nonVoting bool) error {
	if n.host.Running(id) {
		return nil
	}
	if n.host.Bootstrapped(id) && n.host.LocalReplicaID(id) != rid {
		// An older replica of this range (removed while this node was away) is still here.
		if err := n.destroyLocal(n.ctx, id); err != nil {
			return err
		}
	}
	return n.host.StartReplica(raftgroup.Replica{Range: id, ReplicaID: rid, Join: !n.host.Bootstrapped(id), NonVoting: nonVoting})
}

func (n *Node) serveDestroy(ctx context.Context, raw []byte) ([]byte, error) {
	var req startReq
	if err := decodeReq(raw, &req); err != nil {
		return nil, err
	}
	var err error
	// Only the replica that was removed: a late request must not destroy a newer incarnation.
	if req.ReplicaID != 0 && n.host.LocalReplicaID(req.Range) == req.ReplicaID && n.host.Running(req.Range) {
		err = n.destroyLocal(ctx, req.Range)
	}
	return mustJSON(simpleResp{Err: toWire(err)}), nil
}

// destroyLocal removes this node's replica of id and its data: the node must no longer be a
// member of the range.
func (n *Node) destroyLocal(ctx context.Context, id base.RangeID) error {
	n.drain(id)
	st, hasState, err := n.engine.RangeState(id)
	if err != nil {
		return err
	}
	if err := n.host.DestroyReplica(ctx, id); err != nil {
		return err
	}
	if err := n.engine.DestroyRange(id); err != nil {
		return err
	}
	if hasState {
		// The replica's data goes too, except where another range on this node owns it now
		// (the state may be stale: the range split or shrank while this replica lagged).
		if err := n.clearUnowned(st.Span, id); err != nil {
			return err
		}
	}
	if err := n.engine.DeleteNodeLocal(bootRecordKey(id)); err != nil {
		return err
	}
	n.log.Info("replica removed from this node", "range", id)
	return nil
}

func (n *Node) serveChange(ctx context.Context, raw []byte) ([]byte, error) {
	var req changeReq
	if err := decodeReq(raw, &req); err != nil {
		return nil, err
	}
	var err error
	var rid uint64
	switch req.Op {
	case "add_non_voting":
		rid, err = n.host.AddNonVoting(ctx, req.Range, req.Node, req.Addr)
	case "promote":
		err = n.host.Promote(ctx, req.Range, req.Node)
	case "remove":
		err = n.host.RemoveReplica(ctx, req.Range, req.Node)
	case "transfer":
		err = n.host.TransferLeader(ctx, req.Range, req.Node)
	case "compact":
		_, err = n.host.Compact(ctx, req.Range)
	default:
		err = fmt.Errorf("shard: unknown change %q: %w", req.Op, base.ErrInvalidRange)
	}
	if errors.Is(err, raftgroup.ErrNoReplica) {
		err = &RangeMovedError{Reason: fmt.Sprintf("node %d holds no replica of range %d", n.cfg.NodeID, req.Range)}
	}
	return mustJSON(simpleResp{ReplicaID: rid, Err: toWire(err)}), nil
}

func (n *Node) serveLocateMeta(context.Context, []byte) ([]byte, error) {
	n.noteMetaFromLocal()
	meta := n.metaVoters()
	if !n.host.Running(base.MetaRangeID) {
		// Without a meta replica this node's list may be stale: add what its routing cache says.
		if d := n.cache.get(base.MetaRangeID); d != nil {
			for _, r := range d.Replicas {
				if a, ok := n.addrOf(r.Node); ok {
					meta[r.Node] = a
				}
			}
		}
	}
	return mustJSON(locateResp{Meta: meta}), nil
}

// clearUnowned deletes the data of span that no other range on this node owns.
func (n *Node) clearUnowned(span base.Span, except base.RangeID) error {
	ids, err := n.engine.Ranges()
	if err != nil {
		return err
	}
	pieces := []base.Span{span}
	for _, id := range ids {
		if id == except {
			continue
		}
		st, ok, err := n.engine.RangeState(id)
		if err != nil {
			return err
		}
		if ok && !st.Span.Empty() {
			pieces = subtract(pieces, st.Span)
		}
	}
	for _, p := range pieces {
		if err := n.engine.ClearSpan(p); err != nil {
			return err
		}
	}
	return nil
}

// subtract removes o from every span of ss.
func subtract(ss []base.Span, o base.Span) []base.Span {
	var out []base.Span
	for _, s := range ss {
		if !s.Overlaps(o) {
			out = append(out, s)
			continue
		}
		if bytes.Compare(s.Start, o.Start) < 0 {
			out = append(out, base.Span{Start: s.Start, End: o.Start})
		}
		if o.End != nil && (s.End == nil || bytes.Compare(o.End, s.End) < 0) {
			out = append(out, base.Span{Start: o.End, End: s.End})
		}
	}
	return out
}
