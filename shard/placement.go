package shard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/internal/rpc"
)

// driver is the placement driver. It acts only on the node that leads the meta range: it
// compares every range with its policy and the live nodes, and moves replicas (rolling: add a
// non-voting replica, let it catch up, promote it, move the leadership away if needed, remove
// the old replica) so that no step drops a range below its quorum. It also balances replicas
// and leaders across nodes and merges small idle neighbours.
type driver struct {
	n       *Node
	started time.Time

	mu       sync.Mutex
	inflight map[base.RangeID]bool
	recent   []time.Time // start times of moves in the last minute
	firstSee map[base.RangeID]time.Time
	wasLead  bool

	lastLeaderMove time.Time
}

// leaderMoveGap is the least time between two leadership transfers for balance (attempted
// ones included). It is longer than a liveness record stays fresh (3 liveness intervals + 1 s at
// the defaults), so a node that died is no longer a target by the next attempt.
const leaderMoveGap = 5 * time.Second

// leaderMoveTimeout bounds one leadership transfer for balance. While a transfer is pending the
// leader drops every proposal, and raftgroup re-issues a transfer that has not taken: one to a
// node that died would stall the range's writes until the driver's context ended (30 s).
const leaderMoveTimeout = 3 * time.Second

func newDriver(n *Node) *driver {
	return &driver{n: n, started: time.Now(), inflight: make(map[base.RangeID]bool), firstSee: make(map[base.RangeID]time.Time)}
}

// plan is one change to a range: add a replica on add, remove the one on remove (either may be 0).
type plan struct {
	add, remove base.NodeID
	reason      string
}

// clusterView is what one tick of the driver works from.
type clusterView struct {
	now      time.Time
	nodes    map[base.NodeID]NodeRecord
	live     map[base.NodeID]Liveness
	alive    map[base.NodeID]bool // may receive replicas
	dead     map[base.NodeID]bool // replicas on it are replaced
	replicas map[base.NodeID]int
	leaders  map[base.NodeID]int
	loads    map[base.RangeID]RangeLoad
}

func (dr *driver) tick(ctx context.Context) {
	n := dr.n
	if l, ok := n.host.Leader(base.MetaRangeID); !ok || l != n.cfg.NodeID {
		dr.mu.Lock()
		dr.wasLead = false
		dr.mu.Unlock()
		return
	}
	dr.mu.Lock()
	if !dr.wasLead {
		// A new meta leader gives every node a full timeout before calling it dead.
		dr.started, dr.wasLead = time.Now(), true
	}
	dr.mu.Unlock()
	descs, err := n.Descriptors(ctx)
	if err != nil {
		return
	}
	nodes, live, err := n.Nodes(ctx)
	if err != nil {
		return
	}
	v := dr.view(nodes, live)
	for _, d := range descs {
		for _, r := range d.Replicas {
			v.replicas[r.Node]++
		}
	}
	issued := 0
	for _, d := range descs {
		if issued >= n.cfg.MaxConcurrentMoves || !dr.allowMove() {
			break
		}
		p := dr.plan(d, v)
		if p == nil || !dr.begin(d.RangeID) {
			continue
		}
		issued++
		if p.add != 0 {
			v.replicas[p.add]++
		}
		if p.remove != 0 {
			v.replicas[p.remove]--
		}
		dr.launch(d, *p)
	}
	if issued == 0 {
		dr.balanceLeaders(ctx, descs, v)
		dr.considerMerges(ctx, descs, v)
	}
}

func (dr *driver) view(nodes map[base.NodeID]NodeRecord, live map[base.NodeID]Liveness) *clusterView {
	n := dr.n
	v := &clusterView{now: time.Now(), nodes: nodes, live: live, alive: make(map[base.NodeID]bool), dead: make(map[base.NodeID]bool),
		replicas: make(map[base.NodeID]int), leaders: make(map[base.NodeID]int), loads: make(map[base.RangeID]RangeLoad)}
	dr.mu.Lock()
	started := dr.started
	dr.mu.Unlock()
	fresh := 3*n.cfg.LivenessInterval + time.Second
	for id := range nodes {
		l, ok := live[id]
		last := time.Unix(0, l.UnixNano)
		if !ok || last.Before(started) {
			last = started
		}
		age := v.now.Sub(last)
		if ok && v.now.Sub(time.Unix(0, l.UnixNano)) < fresh {
			v.alive[id] = true
		}
		if age > n.cfg.DeadNodeTimeout {
			v.dead[id] = true
		}
		for _, ld := range l.Leading {
			v.leaders[id]++
			v.loads[ld.Range] = ld
		}
	}
	v.alive[n.cfg.NodeID] = true
	delete(v.dead, n.cfg.NodeID)
	return v
}

// eligible lists the nodes that may hold a replica of d, least loaded first.
func (v *clusterView) eligible(d *Descriptor) []base.NodeID {
	var out []base.NodeID
	for id := range v.alive {
		rec := v.nodes[id]
		ok := true
		for k, want := range d.Policy.Constraints {
			if rec.Locality[k] != want {
				ok = false
			}
		}
		if ok {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if v.replicas[out[i]] != v.replicas[out[j]] {
			return v.replicas[out[i]] < v.replicas[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}

func (v *clusterView) fits(d *Descriptor, node base.NodeID) bool {
	rec := v.nodes[node]
	for k, want := range d.Policy.Constraints {
		if rec.Locality[k] != want {
			return false
		}
	}
	return true
}

// plan decides the next change for d, or nil.
func (dr *driver) plan(d *Descriptor, v *clusterView) *plan {
	n := dr.n
	eligible := v.eligible(d)
	// policy is how many voters the range should have; want is how many it can have now.
	// Replicas are added up to want but removed only above policy: a node that merely looks
	// unavailable (a late liveness record) never makes the driver shrink a range.
	policy := d.Policy.Replicas
	if policy <= 0 {
		policy = n.cfg.Replicas
	}
	want := min(policy, len(eligible))
	if want == 0 {
		return nil
	}
	var voters, dead, misplaced []base.NodeID
	for _, r := range d.Replicas {
		if r.NonVoting {
			// A move that was interrupted: finish it (or drop it if that node is gone).
			if v.alive[r.Node] {
				return &plan{add: r.Node, reason: "finish an interrupted move"}
			}
			return &plan{remove: r.Node, reason: "drop a non-voting replica on a lost node"}
		}
		voters = append(voters, r.Node)
		switch {
		case v.dead[r.Node]:
			dead = append(dead, r.Node)
		case !v.fits(d, r.Node):
			misplaced = append(misplaced, r.Node)
		}
	}
	pickTarget := func() base.NodeID {
		for _, id := range eligible {
			if !d.HasReplica(id) {
				return id
			}
		}
		return 0
	}
	liveVoters := len(voters) - len(dead)
	switch {
	case len(dead) > 0:
		if t := pickTarget(); t != 0 {
			return &plan{add: t, remove: dead[0], reason: fmt.Sprintf("node %d is dead", dead[0])}
		}
		if liveVoters >= policy {
			return &plan{remove: dead[0], reason: fmt.Sprintf("node %d is dead", dead[0])}
		}
	case len(voters) < want:
		if t := pickTarget(); t != 0 {
			return &plan{add: t, reason: fmt.Sprintf("%d of %d replicas", len(voters), want)}
		}
	case len(misplaced) > 0:
		if t := pickTarget(); t != 0 {
			return &plan{add: t, remove: misplaced[0], reason: "locality constraint"}
		}
	case len(voters) > policy:
		worst := voters[0]
		for _, id := range voters {
			if v.replicas[id] > v.replicas[worst] {
				worst = id
			}
		}
		return &plan{remove: worst, reason: fmt.Sprintf("%d of %d replicas", len(voters), policy)}
	default:
		// Balance: move a replica from the most loaded of its nodes to the least loaded
		// eligible node when they differ by two or more.
		t := pickTarget()
		if t == 0 {
			return nil
		}
		worst := voters[0]
		for _, id := range voters {
			if v.replicas[id] > v.replicas[worst] {
				worst = id
			}
		}
		if v.replicas[worst]-v.replicas[t] >= 2 {
			return &plan{add: t, remove: worst, reason: "balance replicas"}
		}
	}
	return nil
}

func (dr *driver) allowMove() bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	cut := time.Now().Add(-time.Minute)
	keep := dr.recent[:0]
	for _, t := range dr.recent {
		if t.After(cut) {
			keep = append(keep, t)
		}
	}
	dr.recent = keep
	return len(dr.recent) < dr.n.cfg.MovesPerMinute
}

// begin marks id busy; false if a change to it is in flight already.
func (dr *driver) begin(id base.RangeID) bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.inflight[id] || len(dr.inflight) >= dr.n.cfg.MaxConcurrentMoves {
		return false
	}
	dr.inflight[id] = true
	dr.recent = append(dr.recent, time.Now())
	return true
}

// beginPair marks both ranges busy, or neither (for merges; not counted as moves).
func (dr *driver) beginPair(a, b base.RangeID) bool {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.inflight[a] || dr.inflight[b] {
		return false
	}
	dr.inflight[a], dr.inflight[b] = true, true
	return true
}

func (dr *driver) end(id base.RangeID) {
	dr.mu.Lock()
	delete(dr.inflight, id)
	dr.mu.Unlock()
}

func (dr *driver) launch(d *Descriptor, p plan) {
	n := dr.n
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer dr.end(d.RangeID)
		ctx, cancel := context.WithTimeout(n.ctx, 2*time.Minute)
		defer cancel()
		start := time.Now()
		n.log.Info("replica move started", "range", d.RangeID, "add", p.add, "remove", p.remove, "reason", p.reason)
		err := n.moveReplica(ctx, d.Clone(), p)
		ev := MoveEvent{Range: d.RangeID, From: p.remove, To: p.add, Reason: p.reason, Err: err, Took: time.Since(start)}
		if err != nil {
			n.movesFailed.Add(1)
			if n.ctx.Err() == nil {
				n.log.Warn("replica move failed", "range", d.RangeID, "add", p.add, "remove", p.remove, "err", err)
			}
		} else {
			n.movesDone.Add(1)
			n.log.Info("replica move done", "range", d.RangeID, "add", p.add, "remove", p.remove, "took", ev.Took)
		}
		if n.cfg.Moved != nil {
			n.cfg.Moved(ev)
		}
	}()
}

// moveReplica carries out p on range d, step by step; every step is idempotent, so a move
// interrupted anywhere is finished by a later one.
func (n *Node) moveReplica(ctx context.Context, d *Descriptor, p plan) error {
	if p.add != 0 {
		if err := n.addReplica(ctx, d, p.add); err != nil {
			return fmt.Errorf("add node %d: %w", p.add, err)
		}
	}
	if p.remove != 0 {
		if err := n.removeReplica(ctx, d, p.remove, p.add); err != nil {
			return fmt.Errorf("remove node %d: %w", p.remove, err)
		}
	}
	return nil
}

// addReplica adds target to d as a non-voting replica, waits until it has caught up and
// promotes it.
func (n *Node) addReplica(ctx context.Context, d *Descriptor, target base.NodeID) error {
	addr, ok := n.addrOf(target)
	if !ok {
		return fmt.Errorf("address of node %d unknown", target)
	}
	info, err := n.rangeInfo(ctx, d.RangeID, 0, infoOpts{membership: true})
	if err != nil {
		return err
	}
	if _, voter := info.Voters[target]; !voter {
		rid := info.ReplicaIDs[target]
		if _, nv := info.NonVotingMembers[target]; !nv {
			// Compact every voter's log first: a new replica must start from a snapshot,
			// because a range's log does not begin at its creation (splits and bootstrap
			// create state outside it), whichever voter leads when it joins.
			// A voter that cannot be reached (the dead node being replaced) is skipped: it
			// would have to come back and win an election before the new replica caught up.
			if err := n.compactVoters(ctx, d.RangeID, info.Voters); err != nil {
				return err
			}
			var err error
			if rid, err = n.changeRID(ctx, d.RangeID, changeReq{Op: "add_non_voting", Node: target, Addr: addr}); err != nil {
				return err
			}
		}
		d.setReplica(Replica{Node: target, NonVoting: true})
		if err := n.publishDescriptor(ctx, d.Clone()); err != nil {
			return err
		}
		if err := n.waitCaughtUp(ctx, d.RangeID, target, addr, rid); err != nil {
			return err
		}
		if err := n.change(ctx, d.RangeID, changeReq{Op: "promote", Node: target}); err != nil {
			return err
		}
	}
	d.setReplica(Replica{Node: target})
	return n.publishDescriptor(ctx, d.Clone())
}

// compactVoters snapshots range id and truncates its log on every voter it can reach (at
// least a majority), so that a replica joining now starts from a snapshot.
func (n *Node) compactVoters(ctx context.Context, id base.RangeID, voters map[base.NodeID]string) error {
	compacted := 0
	for voter := range voters {
		err := n.changeOn(ctx, voter, changeReq{Range: id, Op: "compact"})
		switch {
		case err == nil:
			compacted++
		case errors.Is(err, rpc.ErrUnavailable) || errors.Is(err, errNodeUnavailable) || errors.Is(err, ErrRangeMoved):
			// Unreachable, or a voter that does not run its replica (the one being started).
		default:
			return err
		}
	}
	if compacted*2 <= len(voters) {
		return fmt.Errorf("compacted the log on only %d of %d voters", compacted, len(voters))
	}
	return nil
}

// waitCaughtUp starts target's replica and waits until it has applied what the leader had
// applied when the wait began.
func (n *Node) waitCaughtUp(ctx context.Context, id base.RangeID, target base.NodeID, addr string, rid uint64) error {
	leaderInfo, err := n.rangeInfo(ctx, id, 0, infoOpts{})
	if err != nil {
		return err
	}
	goal := leaderInfo.Applied
	var lastStart time.Time
	for {
		if time.Since(lastStart) > 3*time.Second {
			lastStart = time.Now()
			raw, err := n.client.Call(ctx, addr, methodStart, mustJSON(startReq{Range: id, ReplicaID: rid, NonVoting: true}))
			if err == nil {
				var resp simpleResp
				if json.Unmarshal(raw, &resp) == nil && resp.Err != nil {
					n.log.Debug("start joining replica", "range", id, "node", target, "err", resp.Err.Msg)
				}
			}
		}
		info, err := n.rangeInfo(ctx, id, target, infoOpts{})
		if err == nil && info.Running && info.HasState && info.Applied >= goal {
			return nil
		}
		if perr := base.Sleep(ctx, 50*time.Millisecond); perr != nil {
			return fmt.Errorf("node %d did not catch up to %d: %w", target, goal, perr)
		}
	}
}

// removeReplica removes node from d, moving the leadership off it first (to prefer if set).
func (n *Node) removeReplica(ctx context.Context, d *Descriptor, node, prefer base.NodeID) error {
	info, err := n.rangeInfo(ctx, d.RangeID, 0, infoOpts{membership: true})
	if err != nil {
		return err
	}
	_, voter := info.Voters[node]
	_, nv := info.NonVotingMembers[node]
	if voter || nv {
		if info.Leader == node {
			// To prefer if set, else another voter; only to one that answers and runs the
			// replica (a transfer to a dead node never takes, and the leader drops proposals
			// while it is pending), and for a bounded time.
			var cands []base.NodeID
			if prefer != 0 && prefer != node {
				cands = append(cands, prefer)
			}
			for v := range info.Voters {
				if v != node && v != prefer {
					cands = append(cands, v)
				}
			}
			to := base.NodeID(0)
			for _, c := range cands {
				tctx, cancel := context.WithTimeout(ctx, time.Second)
				ci, err := n.rangeInfo(tctx, d.RangeID, c, infoOpts{})
				cancel()
				if err == nil && ci.Running {
					to = c
					break
				}
			}
			if to == 0 {
				return fmt.Errorf("shard: range %d: no live voter to take the leadership from node %d", d.RangeID, node)
			}
			mctx, cancel := context.WithTimeout(ctx, leaderMoveTimeout)
			err := n.change(mctx, d.RangeID, changeReq{Op: "transfer", Node: to})
			cancel()
			if err != nil {
				return err
			}
		}
		if err := n.change(ctx, d.RangeID, changeReq{Op: "remove", Node: node}); err != nil {
			return err
		}
	}
	d.removeReplica(node)
	if err := n.publishDescriptor(ctx, d.Clone()); err != nil {
		return err
	}
	// Best effort: a node that is down destroys its replica when it comes back (replica GC).
	rid := info.ReplicaIDs[node]
	if addr, ok := n.addrOf(node); ok && rid != 0 {
		if node == n.cfg.NodeID {
			if n.host.LocalReplicaID(d.RangeID) == rid {
				return n.destroyLocal(ctx, d.RangeID)
			}
			return nil
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _ = n.client.Call(cctx, addr, methodDestroy, mustJSON(startReq{Range: d.RangeID, ReplicaID: rid}))
		cancel()
	}
	return nil
}

// change runs a membership or leadership change on range id's leader.
func (n *Node) change(ctx context.Context, id base.RangeID, req changeReq) error {
	_, err := n.changeRID(ctx, id, req)
	return err
}

// changeRID is change, returning the replica ID an add_non_voting gave the node.
func (n *Node) changeRID(ctx context.Context, id base.RangeID, req changeReq) (uint64, error) {
	req.Range = id
	var last error
	for attempt := 0; attempt < 20; attempt++ {
		info, err := n.rangeInfo(ctx, id, 0, infoOpts{})
		leader := info.Leader
		if err != nil || leader == 0 {
			last = fmt.Errorf("no leader: %v", err)
		} else if leader == n.cfg.NodeID {
			raw, _ := n.serveChange(ctx, mustJSON(req))
			var rid uint64
			if rid, last = decodeSimple(leader, raw); last == nil {
				return rid, nil
			}
		} else if addr, ok := n.addrOf(leader); ok {
			raw, err := n.client.Call(ctx, addr, methodChange, mustJSON(req))
			if err == nil {
				var rid uint64
				if rid, last = decodeSimple(leader, raw); last == nil {
					return rid, nil
				}
			} else {
				last = err
			}
		}
		if perr := base.Sleep(ctx, time.Duration(attempt+1)*50*time.Millisecond); perr != nil {
			break
		}
	}
	return 0, fmt.Errorf("range %d: %s: %w", id, req.Op, last)
}

// changeOn runs req on node's replica (not necessarily the leader).
func (n *Node) changeOn(ctx context.Context, node base.NodeID, req changeReq) error {
	if node == n.cfg.NodeID {
		raw, _ := n.serveChange(ctx, mustJSON(req))
		_, err := decodeSimple(node, raw)
		return err
	}
	addr, ok := n.addrOf(node)
	if !ok {
		return fmt.Errorf("address of node %d unknown", node)
	}
	raw, err := n.client.Call(ctx, addr, methodChange, mustJSON(req))
	if err != nil {
		return err
	}
	_, err = decodeSimple(node, raw)
	return err
}

func decodeSimple(node base.NodeID, raw []byte) (uint64, error) {
	var resp simpleResp
	if err := json.Unmarshal(raw, &resp); err != nil {
		return 0, fmt.Errorf("node %d: %w", node, base.ErrCorruption)
	}
	return resp.ReplicaID, resp.Err.err(node)
}

// balanceLeaders moves one leadership from the node leading the most ranges to a voter on a
// node leading fewer, when they differ by two or more.
func (dr *driver) balanceLeaders(ctx context.Context, descs []*Descriptor, v *clusterView) {
	// A leadership transfer drops the proposals followers are forwarding at that moment (their
	// writers see ErrAmbiguous), so leaderships move slowly: one every leaderMoveGap.
	dr.mu.Lock()
	recent := time.Since(dr.lastLeaderMove) < leaderMoveGap
	dr.mu.Unlock()
	if len(v.alive) < 2 || recent {
		return
	}
	var most base.NodeID
	for id := range v.alive {
		if most == 0 || v.leaders[id] > v.leaders[most] {
			most = id
		}
	}
	l, ok := v.live[most]
	if !ok {
		return
	}
	for _, ld := range l.Leading {
		d := dr.n.cache.get(ld.Range)
		// The meta range's leadership stays put: it carries the placement driver, and moving
		// it hands balancing to a node whose view of who leads what is older.
		if d == nil || d.RangeID == base.MetaRangeID {
			continue
		}
		for _, to := range d.Voters() {
			if to != most && v.alive[to] && v.leaders[most]-v.leaders[to] >= 2 {
				// The liveness record may be a second old: check who leads now.
				if info, err := dr.n.rangeInfo(ctx, d.RangeID, 0, infoOpts{}); err != nil || info.Leader != most {
					break
				}
				// A liveness record is fresh for seconds after its node died: ask the target
				// itself (a transfer to a dead node never takes; see leaderMoveTimeout).
				tctx, cancel := context.WithTimeout(ctx, time.Second)
				info, err := dr.n.rangeInfo(tctx, d.RangeID, to, infoOpts{})
				cancel()
				if err != nil || !info.Running {
					continue
				}
				if !dr.begin(d.RangeID) {
					return
				}
				defer dr.end(d.RangeID)
				dr.mu.Lock()
				dr.lastLeaderMove = time.Now()
				dr.mu.Unlock()
				mctx, cancel := context.WithTimeout(ctx, leaderMoveTimeout)
				err = dr.n.change(mctx, d.RangeID, changeReq{Op: "transfer", Node: to})
				cancel()
				if err != nil {
					dr.n.log.Debug("leader balance", "range", d.RangeID, "to", to, "err", err)
					return
				}
				dr.n.log.Info("leadership moved for balance", "range", d.RangeID, "from", most, "to", to)
				return
			}
		}
	}
}
