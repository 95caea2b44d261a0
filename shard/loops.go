package shard

import (
	"context"
	"errors"
	"time"

	"github.com/bondkv/bondkv/internal/base"
)

// startLoops starts the node's background work; Close stops it.
func (n *Node) startLoops() {
	n.every(n.cfg.LivenessInterval, "liveness", func(ctx context.Context) {
		if err := n.heartbeat(ctx); err != nil {
			n.log.Debug("liveness heartbeat failed", "err", err)
		}
	})
	n.every(time.Second, "ranges", func(ctx context.Context) {
		n.noteMetaFromLocal()
		if _, err := n.Descriptors(ctx); err != nil {
			n.log.Debug("descriptor refresh failed", "err", err)
			return
		}
		n.publishLocal(ctx)
		for _, id := range n.observeLoads() {
			n.autoSplit(ctx, id)
		}
	})
	n.every(5*time.Second, "replica gc", n.collectReplicas)
	n.every(n.cfg.PlacementInterval, "placement", n.driver.tick)
}

// every runs f every d until Close, each run bounded by a timeout.
func (n *Node) every(d time.Duration, what string, f func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-n.ctx.Done():
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
			f(ctx)
			cancel()
		}
	}()
}

// publishLocal makes the meta range agree with the ranges this node leads: span and generation
// come from the replica's state, replicas from the range's membership. It repairs meta after a
// split whose coordinator died before recording it. Only differences are looked into, and then
// the membership is read through the leader (linearizably), so a node that merely believes it
// leads publishes nothing.
func (n *Node) publishLocal(ctx context.Context) {
	for _, lr := range n.host.LocalReplicas() {
		if !lr.Leader {
			continue
		}
		st, ok, err := n.engine.RangeState(lr.Range)
		if err != nil || !ok {
			continue
		}
		d := n.cache.get(lr.Range)
		if d != nil && d.Generation > st.Generation {
			continue // this replica is behind: its leader will catch up
		}
		if d != nil && d.Generation == st.Generation && sameSpan(d.Span(), st.Span) && sameSet(voterSet(d), keys(lr.Voters)) {
			continue
		}
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := n.host.Membership(mctx, lr.Range)
		cancel()
		if err != nil {
			continue
		}
		want := &Descriptor{RangeID: lr.Range, Start: st.Span.Start, End: st.Span.End, Generation: st.Generation}
		switch {
		case d != nil:
			want.Policy, want.Sticky = d.Policy, d.Sticky
		default:
			// A range a split made whose coordinator did not record it: it starts with the
			// policy of the range it came from (meta keeps the one it has if it has one).
			if parent := n.cache.lookup(st.Span.Start); parent != nil {
				want.Policy = parent.Policy
			}
		}
		for node := range m.Voters {
			want.Replicas = append(want.Replicas, Replica{Node: node})
		}
		for node := range m.NonVoting {
			want.Replicas = append(want.Replicas, Replica{Node: node, NonVoting: true})
		}
		sortReplicas(want.Replicas)
		if err := n.publishDescriptor(ctx, want); err != nil {
			n.log.Debug("publish descriptor failed", "range", lr.Range, "err", err)
		}
	}
}

func sameSpan(a, b base.Span) bool { return a.Equal(b) }

// collectReplicas destroys local replicas whose range removed this node (it was down while its
// replicas were replaced, or a move's last step did not reach it).
func (n *Node) collectReplicas(ctx context.Context) {
	for _, lr := range n.host.LocalReplicas() {
		d := n.cache.get(lr.Range)
		if d == nil || d.HasReplica(n.cfg.NodeID) {
			continue
		}
		var removed bool
		for _, r := range d.Replicas {
			info, err := n.rangeInfo(ctx, lr.Range, r.Node, infoOpts{membership: true})
			if err != nil || !info.Running {
				continue
			}
			removed = info.RemovedIDs[n.host.LocalReplicaID(lr.Range)]
			break
		}
		if !removed {
			continue
		}
		if err := n.destroyLocal(ctx, lr.Range); err != nil && !errors.Is(err, base.ErrClosed) {
			n.log.Warn("removing a stale replica failed", "range", lr.Range, "err", err)
		}
	}
}
