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
// come from the replica's state, voters from its membership. It repairs meta after a split
// whose coordinator died before recording it.
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
		want := &Descriptor{RangeID: lr.Range, Start: st.Span.Start, End: st.Span.End, Generation: st.Generation}
		if d != nil {
			want.Policy, want.Sticky = d.Policy, d.Sticky
			for _, r := range d.Replicas {
				if _, voter := lr.Voters[r.Node]; r.NonVoting && !voter {
					want.Replicas = append(want.Replicas, r) // non-voting members are the driver's to record
				}
			}
		}
		for node := range lr.Voters {
			want.Replicas = append(want.Replicas, Replica{Node: node})
		}
		sortReplicas(want.Replicas)
		if d != nil && d.Generation == want.Generation && sameSpan(d.Span(), want.Span()) && sameReplicas(d.Replicas, want.Replicas) {
			continue
		}
		if d != nil && d.Generation > want.Generation {
			continue // this replica is behind: its leader will catch up
		}
		if err := n.publishDescriptor(ctx, want); err != nil {
			n.log.Debug("publish descriptor failed", "range", lr.Range, "err", err)
		}
	}
}

func sameSpan(a, b base.Span) bool { return a.Equal(b) }

func sameReplicas(a, b []Replica) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

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
