package raftgroup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/client"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/store"
)

// Proposal batching. Every Raft entry costs the same fixed work on every replica (queueing, log
// encoding, a result notification, an apply call) whatever its size, so concurrent writers to one
// range share entries: a proposer keeps at most maxInflight entries in flight per range and, while
// they are in flight, gathers what arrives into the next entry. Under light load an entry carries
// one write and leaves at once (no added latency); under heavy load entries carry many writes.
const (
	maxInflight   = 2
	maxBatchBytes = 4 << 20
	maxBatchCmds  = 1024
)

type outcome struct {
	res store.Result
	err error
}

type waiter struct {
	ctx context.Context
	// exclusive commands (admin operations, conditional writes) travel in an entry of their
	// own: their entry's outcome depends on them alone.
	exclusive bool
	cmds      []store.Command // copies: the caller's buffers are free once propose returns
	size      int
	done      chan outcome // buffered 1
}

// newWaiter copies cmds' keys and values into one buffer, so that an entry built after its caller
// gave up (context ended) never reads memory the caller has reused.
func newWaiter(ctx context.Context, cmds []store.Command) *waiter {
	n := 0
	for _, c := range cmds {
		n += len(c.Key) + len(c.Value) + len(c.Expect)
	}
	buf := make([]byte, 0, n)
	w := &waiter{ctx: ctx, cmds: make([]store.Command, len(cmds)), done: make(chan outcome, 1),
		exclusive: store.IsExclusive(cmds)}
	for i, c := range cmds {
		buf = append(buf, c.Key...)
		k := buf[len(buf)-len(c.Key):]
		buf = append(buf, c.Value...)
		v := buf[len(buf)-len(c.Value):]
		w.cmds[i] = store.Command{Op: c.Op, Key: k, Value: v, ExpectAbsent: c.ExpectAbsent}
		if c.Expect != nil {
			buf = append(buf, c.Expect...)
			w.cmds[i].Expect = buf[len(buf)-len(c.Expect):]
		}
		w.size += len(c.Key) + len(c.Value) + 16
	}
	return w
}

type proposer struct {
	h       *Host
	id      base.RangeID
	session *client.Session

	mu      sync.Mutex
	pending []*waiter
	pumping bool // a pump goroutine is running; it exits when the queue is empty
	stopped bool
	stopErr error // what stop gives the writes it fails; set before stopc is closed

	// lastDone is when an entry of this proposer last completed (unix nanoseconds; 0: never).
	lastDone atomic.Int64

	entries  atomic.Uint64 // entries handed to Raft (attempts that were dropped and retried count once)
	commands atomic.Uint64 // commands those entries carried

	slots    chan struct{} // in-flight entries
	stopc    chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// newProposer returns range id's proposer. It runs no goroutine while idle: a pump starts when a
// write arrives and ends when the queue is empty, so a node with many quiet ranges pays nothing.
func newProposer(h *Host, id base.RangeID) *proposer {
	return &proposer{
		h:       h,
		id:      id,
		session: h.nh.GetNoOPSession(uint64(id)),
		slots:   make(chan struct{}, maxInflight),
		stopc:   make(chan struct{}),
	}
}

// stop fails queued writes with err (none of them entered the log) and waits for the entries
// in flight to end: base.ErrClosed when the host closes, ErrNoReplica when only this replica
// stops (the range merged away or moved), which callers may retry elsewhere.
func (p *proposer) stop(err error) {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.stopped = true
		p.stopErr = err
		p.mu.Unlock()
		close(p.stopc)
	})
	p.wg.Wait()
	p.failPending(p.stopErr)
}

func (p *proposer) propose(ctx context.Context, cmds []store.Command) (store.Result, error) {
	if err := ctx.Err(); err != nil {
		return store.Result{}, err
	}
	w := newWaiter(ctx, cmds)
	p.mu.Lock()
	if p.stopped {
		err := p.stopErr
		p.mu.Unlock()
		return store.Result{}, err
	}
	p.pending = append(p.pending, w)
	if !p.pumping {
		p.pumping = true
		p.wg.Add(1) // never concurrent with stop's Wait: stopped is checked under the same lock
		go p.pump()
	}
	p.mu.Unlock()
	select {
	case o := <-w.done:
		return o.res, o.err
	case <-ctx.Done():
		if p.withdraw(w) {
			return store.Result{}, ctx.Err()
		}
		return store.Result{}, fmt.Errorf("range %d: %w: %w", p.id, base.ErrAmbiguous, ctx.Err())
	case <-p.stopc:
		if p.withdraw(w) {
			return store.Result{}, p.stopErr
		}
		// Taken already: its entry's goroutine reports the outcome.
		o := <-w.done
		return o.res, o.err
	}
}

// withdraw removes w if it has not been taken into an entry yet.
func (p *proposer) withdraw(w *waiter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.pending {
		if x == w {
			p.pending = append(p.pending[:i], p.pending[i+1:]...)
			return true
		}
	}
	return false
}

// pump turns the queue into entries, at most maxInflight at a time, until the queue is empty.
func (p *proposer) pump() {
	defer p.wg.Done()
	for {
		select {
		case p.slots <- struct{}{}:
		case <-p.stopc:
			p.mu.Lock()
			p.pumping = false
			p.mu.Unlock()
			return
		}
		batch := p.take()
		if batch == nil {
			<-p.slots
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() { <-p.slots }()
			p.run(batch)
		}()
	}
}

// take removes the next entry's worth of waiters from the queue. With the queue empty it
// returns nil and marks the pump as ended, under the same lock that propose starts one under.
func (p *proposer) take() []*waiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) == 0 {
		p.pumping = false
		return nil
	}
	n, size, cmds := 0, 0, 0
	for n < len(p.pending) {
		w := p.pending[n]
		if n > 0 && (size+w.size > maxBatchBytes || cmds+len(w.cmds) > maxBatchCmds || w.exclusive || p.pending[0].exclusive) {
			break
		}
		size += w.size
		cmds += len(w.cmds)
		n++
	}
	batch := append([]*waiter(nil), p.pending[:n]...)
	p.pending = append(p.pending[:0], p.pending[n:]...)
	return batch
}

func (p *proposer) failPending(err error) {
	p.mu.Lock()
	pending := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, w := range pending {
		w.done <- outcome{err: err}
	}
}

// run proposes one entry carrying every waiter's commands and reports its outcome to each.
func (p *proposer) run(batch []*waiter) {
	if err := p.wake(batch); err != nil {
		for _, w := range batch {
			w.done <- outcome{err: err}
		}
		return
	}
	var cmds []store.Command
	for _, w := range batch {
		cmds = append(cmds, w.cmds...)
	}
	data := store.EncodeCommands(nil, cmds)
	p.entries.Add(1)
	p.commands.Add(uint64(len(cmds)))
	o := p.proposeEntry(data, func() bool { return p.abandonedAll(batch) })
	if o.err == nil {
		p.lastDone.Store(time.Now().UnixNano())
	}
	if len(o.res.Conflicts) == 0 {
		for _, w := range batch {
			w.done <- o
		}
		return
	}
	// Some commands were held by intents: each writer hears about its own commands only.
	off := 0
	for _, w := range batch {
		wo := outcome{res: store.Result{Code: o.res.Code, Err: o.res.Err}, err: o.err}
		for _, c := range o.res.Conflicts {
			if c.Cmd >= off && c.Cmd < off+len(w.cmds) {
				c.Cmd -= off
				wo.res.Conflicts = append(wo.res.Conflicts, c)
			}
		}
		off += len(w.cmds)
		w.done <- wo
	}
}

// wakeAfter is how long a range may go without a write from this node before the next one
// first confirms a live leader with a ReadIndex round (and the entry after a timed-out proposal
// does the same). A follower keeps believing in its last leader until an election timeout
// passes, and forwards proposals to it, so a proposal into a group whose leader just died would
// time out with an unknown outcome (TestQuietGroupLosesItsLeader fails without this). A ReadIndex
// succeeds only through a live leader (it also wakes a quiesced group), and a read has no
// outcome to lose.
const wakeAfter = 5 * time.Second

// wake confirms, after a quiet spell, that the group has a live leader; the error (nothing was
// proposed) goes to every waiter.
func (p *proposer) wake(batch []*waiter) error {
	if last := p.lastDone.Load(); last != 0 && time.Since(time.Unix(0, last)) < wakeAfter {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	for {
		if p.abandonedAll(batch) {
			return fmt.Errorf("range %d: every caller gave up while the group woke", p.id)
		}
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		_, err := p.h.nh.SyncRead(actx, uint64(p.id), ReadFunc(func(*store.Engine) (any, error) { return nil, nil }))
		acancel()
		if err == nil {
			return nil
		}
		retry, rerr := p.h.retryable(ctx, err)
		if !retry {
			return fmt.Errorf("range %d: %w", p.id, rerr)
		}
		select {
		case <-p.stopc:
			return p.stopErr
		default:
		}
	}
}

func (p *proposer) abandonedAll(batch []*waiter) bool {
	for _, w := range batch {
		if w.ctx.Err() == nil {
			return false
		}
	}
	return true
}

// attempt proposes data once. An error means the proposal certainly did not enter the log.
func (p *proposer) attempt(data []byte) (outcome, error) {
	rs, err := p.h.nh.Propose(p.session, data, attemptTimeout)
	if err != nil {
		return outcome{}, err
	}
	r := <-rs.ResultC()
	rs.Release()
	switch {
	case r.Completed():
		res := r.GetResult()
		cs, err := store.DecodeConflicts(res.Data)
		if err != nil {
			return outcome{err: fmt.Errorf("range %d: result: %w", p.id, err)}, nil
		}
		return outcome{res: store.Result{Code: store.ResultCode(res.Value), Conflicts: cs}}, nil
	case r.Dropped():
		return outcome{}, dragonboat.ErrShardNotReady
	case r.Terminated():
		return outcome{err: fmt.Errorf("range %d: %w: replica stopped", p.id, base.ErrAmbiguous)}, nil
	case r.Timeout():
		// The leader this replica forwards to may be gone while the replica sits quiesced
		// (a quiesced follower does not notice by itself): the next entry wakes the group first.
		p.lastDone.Store(0)
		return outcome{err: fmt.Errorf("range %d: %w: proposal timed out", p.id, base.ErrAmbiguous)}, nil
	}
	return outcome{err: fmt.Errorf("range %d: proposal rejected", p.id)}, nil
}

// proposeEntry hands data to Raft, retrying while the group reports that the proposal was
// dropped before it entered the log (no leader, busy); those never apply, so a retry cannot
// apply an entry twice. It stops retrying once every caller has given up (abandoned), so an old
// write cannot land after its caller has moved on.
func (p *proposer) proposeEntry(data []byte, abandoned func() bool) outcome {
	deadline := time.Now().Add(DefaultTimeout)
	for {
		// A proposal handed to a group that has no leader yet may wait in dragonboat's queue
		// past its timeout and still apply afterwards, so its outcome would be unknown. Until a
		// leader is known (a new range's first election takes an election timeout), wait here.
		_, _, ok, err := p.h.nh.GetLeaderID(uint64(p.id))
		if err == nil && !ok {
			err = dragonboat.ErrShardNotReady
		}
		if err == nil {
			var o outcome
			if o, err = p.attempt(data); err == nil {
				return o
			}
		}
		switch {
		case errors.Is(err, dragonboat.ErrClosed):
			return outcome{err: base.ErrClosed}
		case errors.Is(err, dragonboat.ErrShardNotFound), errors.Is(err, dragonboat.ErrShardClosed):
			return outcome{err: fmt.Errorf("range %d: %w", p.id, ErrNoReplica)}
		case errors.Is(err, dragonboat.ErrShardNotReady), errors.Is(err, dragonboat.ErrSystemBusy):
		default:
			return outcome{err: fmt.Errorf("range %d: propose: %w", p.id, err)}
		}
		if time.Now().After(deadline) {
			return outcome{err: fmt.Errorf("range %d: no leader within %v: %w", p.id, DefaultTimeout, err)}
		}
		if abandoned() {
			return outcome{err: fmt.Errorf("range %d: every caller gave up while the group had no leader: %w", p.id, err)}
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-p.stopc:
			t.Stop()
			return outcome{err: p.stopErr}
		case <-t.C:
		}
	}
}
