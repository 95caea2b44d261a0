package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/store"
)

// considerMerges looks for two adjacent ranges that are both idle, together smaller than
// MergeSize, not created by an explicit Split and old enough; it co-locates their replicas
// (moving the right one's) and then merges them. One merge at a time.
func (dr *driver) considerMerges(ctx context.Context, descs []*Descriptor, v *clusterView) {
	n := dr.n
	if n.cfg.MergeSize < 0 {
		return
	}
	now := time.Now()
	dr.mu.Lock()
	seen := make(map[base.RangeID]time.Time, len(descs))
	for _, d := range descs {
		t, ok := dr.firstSee[d.RangeID]
		if !ok {
			t = now
		}
		seen[d.RangeID] = t
	}
	dr.firstSee = seen
	dr.mu.Unlock()
	cooldown := 10 * n.cfg.PlacementInterval
	var user []*Descriptor
	for _, d := range descs {
		if !d.isSystem() {
			user = append(user, d)
		}
	}
	for i := 0; i+1 < len(user); i++ {
		l, r := user[i], user[i+1]
		if l.End == nil || !bytes.Equal(l.End, r.Start) || r.Sticky {
			continue
		}
		if now.Sub(seen[l.RangeID]) < cooldown || now.Sub(seen[r.RangeID]) < cooldown {
			continue
		}
		ll, lok := v.loads[l.RangeID]
		rl, rok := v.loads[r.RangeID]
		// Together they must also stay well below the split size, or the merged range would
		// split again.
		if !lok || !rok || ll.EntriesPerSec > 1 || rl.EntriesPerSec > 1 || int64(ll.Size+rl.Size) > n.cfg.MergeSize ||
			ll.Size+rl.Size > n.cfg.SplitSize/2 {
			continue
		}
		if !samePolicy(l.Policy, r.Policy) {
			continue
		}
		lv, rv := voterSet(l), voterSet(r)
		if !sameSet(lv, rv) || len(l.Voters()) != len(l.Replicas) || len(r.Voters()) != len(r.Replicas) {
			// Co-locate first: move one of the right range's replicas onto a node of the left's.
			var add, remove base.NodeID
			for id := range lv {
				if !rv[id] && v.alive[id] {
					add = id
					break
				}
			}
			for id := range rv {
				if !lv[id] {
					remove = id
					break
				}
			}
			if add == 0 && remove == 0 {
				continue
			}
			if !dr.allowMove() || !dr.begin(r.RangeID) {
				return
			}
			dr.launch(r, plan{add: add, remove: remove, reason: fmt.Sprintf("co-locate with range %d for a merge", l.RangeID)})
			return
		}
		if !dr.beginPair(l.RangeID, r.RangeID) {
			return
		}
		err := n.merge(ctx, l, r)
		dr.end(l.RangeID)
		dr.end(r.RangeID)
		if err != nil {
			n.log.Warn("merge failed", "left", l.RangeID, "right", r.RangeID, "err", err)
		}
		return
	}
}

func samePolicy(a, b Policy) bool {
	if a.Replicas != b.Replicas || a.Consistency != b.Consistency || len(a.Constraints) != len(b.Constraints) {
		return false
	}
	for k, v := range a.Constraints {
		if b.Constraints[k] != v {
			return false
		}
	}
	return true
}

func voterSet(d *Descriptor) map[base.NodeID]bool {
	out := make(map[base.NodeID]bool)
	for _, id := range d.Voters() {
		out[id] = true
	}
	return out
}

func sameSet(a, b map[base.NodeID]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for id := range a {
		if !b[id] {
			return false
		}
	}
	return true
}

// merge merges r into l, whose replicas are on the same nodes: it freezes r, checks that every
// replica of r applied the freeze (and made it durable), then has l take over r's span in one
// command. If a replica cannot confirm, r is unfrozen and nothing changes.
func (n *Node) merge(ctx context.Context, l, r *Descriptor) error {
	// Freezing is idempotent: an attempt with an unknown outcome is repeated.
	for {
		_, err := n.propose(ctx, r.RangeID, []store.Command{store.FreezeCommand()})
		if err == nil || errors.Is(err, errFrozen) {
			break
		}
		if !errors.Is(err, base.ErrAmbiguous) || ctx.Err() != nil {
			return fmt.Errorf("freeze range %d: %w", r.RangeID, err)
		}
	}
	unfreeze := func(cause error) error {
		if _, err := n.propose(ctx, r.RangeID, []store.Command{store.UnfreezeCommand()}); err != nil {
			return fmt.Errorf("%w (and unfreezing range %d failed: %v)", cause, r.RangeID, err)
		}
		return cause
	}
	lead, err := n.rangeInfo(ctx, r.RangeID, 0, infoOpts{membership: true})
	if err != nil {
		return unfreeze(err)
	}
	if !lead.Frozen || !lead.Span.Equal(r.Span()) {
		return unfreeze(fmt.Errorf("range %d changed under the merge", r.RangeID))
	}
	left, err := n.rangeInfo(ctx, l.RangeID, 0, infoOpts{membership: true})
	if err != nil {
		return unfreeze(err)
	}
	if len(lead.NonVotingMembers) > 0 || len(left.NonVotingMembers) > 0 || !sameSet(keys(left.Voters), keys(lead.Voters)) ||
		left.Span.End == nil || !bytes.Equal(left.Span.End, lead.Span.Start) {
		return unfreeze(fmt.Errorf("ranges %d and %d are not adjacent on the same nodes", l.RangeID, r.RangeID))
	}
	deadline := time.Now().Add(10 * time.Second)
	for node := range lead.Voters {
		for {
			info, err := n.rangeInfo(ctx, r.RangeID, node, infoOpts{sync: true})
			if err == nil && info.Frozen && info.Applied >= lead.Applied {
				break
			}
			if time.Now().After(deadline) {
				return unfreeze(fmt.Errorf("replica of range %d on node %d did not confirm the freeze: %v", r.RangeID, node, err))
			}
			if perr := base.Sleep(ctx, 50*time.Millisecond); perr != nil {
				return unfreeze(perr)
			}
		}
	}
	args := store.MergeArgs{Right: r.RangeID, RightSpan: lead.Span, RightGeneration: lead.Gen, RightVersion: lead.Version}
	// merged reports whether the left range has taken over the right one's span.
	took := func() bool {
		info, err := n.rangeInfo(ctx, l.RangeID, 0, infoOpts{})
		return err == nil && bytes.Equal(info.Span.Start, left.Span.Start) &&
			(info.Span.End == nil && lead.Span.End == nil || info.Span.End != nil && lead.Span.End != nil && bytes.Equal(info.Span.End, lead.Span.End))
	}
	for {
		_, err = n.propose(ctx, l.RangeID, []store.Command{store.MergeCommand(args)})
		if err == nil {
			break
		}
		if (errors.Is(err, errRejected) || errors.Is(err, base.ErrAmbiguous)) && took() {
			// The merge applied and its answer was lost (a repeat is refused: the spans no
			// longer meet).
			err = nil
			break
		}
		if errors.Is(err, base.ErrAmbiguous) && ctx.Err() == nil {
			continue // not applied yet: a repeat is refused if the first one applies later
		}
		if errors.Is(err, base.ErrAmbiguous) {
			return err // the right range stays frozen; the next merge attempt finishes it
		}
		return unfreeze(err)
	}
	n.merges.Add(1)
	merged := l.Clone()
	if info, err := n.rangeInfo(ctx, l.RangeID, 0, infoOpts{}); err == nil && info.HasState {
		merged.Start, merged.End, merged.Generation = info.Span.Start, info.Span.End, info.Gen
	} else {
		merged.End = lead.Span.End
		merged.Generation = max(l.Generation, lead.Gen) + 1
	}
	if err := n.publishDescriptor(ctx, merged); err != nil {
		return err
	}
	err = n.metaDelete(ctx, descKey(r.RangeID))
	n.cache.remove(r.RangeID)
	n.log.Debug("merge recorded in meta", "left", l.RangeID, "right", r.RangeID)
	return err
}

func keys(m map[base.NodeID]string) map[base.NodeID]bool {
	out := make(map[base.NodeID]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// Merge merges the range that starts at key into its left neighbour, now. Both must have
// their voters on the same nodes. It is what the placement driver does to small idle ranges,
// on demand (tools and tests); it ignores size, load and the sticky bit.
func (n *Node) Merge(ctx context.Context, key []byte) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	descs, err := n.Descriptors(ctx)
	if err != nil {
		return err
	}
	var l, r *Descriptor
	for _, d := range descs {
		if d.isSystem() {
			continue
		}
		if bytes.Equal(d.Start, key) {
			r = d
		}
		if d.End != nil && bytes.Equal(d.End, key) {
			l = d
		}
	}
	if l == nil || r == nil {
		return fmt.Errorf("shard: merge at %q: no range boundary there: %w", key, base.ErrInvalidRange)
	}
	if !sameSet(voterSet(l), voterSet(r)) {
		return fmt.Errorf("shard: merge at %q: ranges %d and %d are not on the same nodes: %w", key, l.RangeID, r.RangeID, base.ErrInvalidRange)
	}
	dr := n.driver
	for !dr.beginPair(l.RangeID, r.RangeID) {
		if err := base.Sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("shard: merge at %q: ranges busy: %w", key, err)
		}
	}
	defer dr.end(l.RangeID)
	defer dr.end(r.RangeID)
	return n.merge(ctx, l, r)
}
