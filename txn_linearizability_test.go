package bondkv_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/bondkv/bondkv"
	"github.com/bondkv/bondkv/internal/testcluster"
)

// The per-key register model the histories below are checked against. Every written value is
// unique and non-empty, so the state is one string, "" meaning the key has no value.

type linKind uint8

const (
	linGet linKind = iota
	linPut
	linCAS
)

type linInput struct {
	kind   linKind
	key    string
	value  string // put, cas: the value written
	expect string // cas: the value required ("" = absent)
}

type linOutput struct {
	value   string // get, cas: the value read ("" = absent)
	swapped bool   // cas
	// unknown: a write whose outcome is unknown (ambiguous, deadline, node killed under it).
	// Its return time is the end of the history, so "not applied" is the same as "applied
	// after everything else".
	unknown bool
}

// linModel is partitioned by key: a history is linearizable iff each key's is.
var linModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(linInput).key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(string), input.(linInput), output.(linOutput)
		switch in.kind {
		case linGet:
			return out.value == s, s
		case linPut:
			return true, in.value
		default: // linCAS
			match := s == in.expect
			switch {
			case out.unknown && match:
				return true, in.value
			case out.unknown:
				return true, s
			case out.swapped:
				return match, in.value
			default: // it read another value than expected, and wrote nothing
				return !match && s == out.value, s
			}
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		switch {
		case in.kind == linGet:
			return fmt.Sprintf("get(%s) → %s", in.key, linShow(out.value))
		case in.kind == linPut && out.unknown:
			return fmt.Sprintf("put(%s, %s) → ?", in.key, in.value)
		case in.kind == linPut:
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		case out.unknown:
			return fmt.Sprintf("cas(%s, %s → %s) → ?", in.key, linShow(in.expect), in.value)
		case out.swapped:
			return fmt.Sprintf("cas(%s, %s → %s) → swapped", in.key, linShow(in.expect), in.value)
		default:
			return fmt.Sprintf("cas(%s, %s → %s) → read %s", in.key, linShow(in.expect), in.value, linShow(out.value))
		}
	},
	DescribeState: func(state any) string { return linShow(state.(string)) },
}

func linShow(v string) string {
	if v == "" {
		return "∅"
	}
	return v
}

// linRun collects the operations of every client goroutine and counts outcomes.
type linRun struct {
	t       *testing.T
	start   time.Time
	clients atomic.Int64 // porcupine client IDs handed out

	mu     sync.Mutex
	ops    []porcupine.Operation
	counts map[string]int // "cas swapped", "put unknown", "error ambiguous", …
}

func (r *linRun) now() int64 { return int64(time.Since(r.start)) }

func (r *linRun) record(what string, ops ...porcupine.Operation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, ops...)
	r.counts[what]++
}

// failed counts err by kind and logs the first of each kind.
func (r *linRun) failed(err error) {
	kind := "other"
	switch {
	case errors.Is(err, bondkv.ErrAmbiguous):
		kind = "ambiguous"
	case errors.Is(err, context.DeadlineExceeded):
		kind = "deadline"
	case errors.Is(err, bondkv.ErrClosed):
		kind = "closed"
	case errors.Is(err, bondkv.ErrConflict):
		kind = "conflict"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts["error "+kind]++
	if r.counts["error "+kind] == 1 {
		r.t.Logf("first %s error: %v", kind, err)
	}
}

// TestTxnLinearizability checks single-key operations done through Update and View for
// linearizability with porcupine: Get (View), Put (Update) and compare-and-set (Update: Get,
// then Put if the value matches) on four keys in two ranges, plus a two-range Update (2PC) that
// writes one key of each range. Six clients spread over the three nodes of a cluster while the
// first user range's leadership moves every second and the node leading it is killed and
// restarted.
//
// The two-range Update enters each key's history as a Put with the Update's call and return
// times: the per-key projections of a strictly serializable history are linearizable, so this is
// sound, though it does not check the two writes' atomicity (the other txn tests do).
//
// A write whose outcome is unknown stays in the history with its return time at the end; a
// failed read, or a compare-and-set whose read failed (Update then returns fn's error and
// proposes nothing), is dropped.
func TestTxnLinearizability(t *testing.T) {
	const (
		clients   = 6
		run       = 8 * time.Second
		opTimeout = 2 * time.Second
		killAt    = 3 * time.Second
		downFor   = 1500 * time.Millisecond
		checkTime = 20 * time.Second
	)
	keys := []string{"lin/a", "lin/b", "lin/m", "lin/n"} // split at lin/m: two keys per range
	seed := testSeed(t)
	c := testcluster.New(t, testcluster.Config{Nodes: 3, Expert: clusterExpert})
	ctx := context.Background()
	if err := c.Node(0).Split(ctx, []byte("lin/m")); err != nil {
		t.Fatal(err)
	}

	r := &linRun{t: t, start: time.Now(), counts: map[string]int{}}
	r.clients.Store(clients)
	stop := make(chan struct{})
	nctx, cancelNemesis := context.WithCancel(ctx) // the clients' operations finish by themselves
	var once sync.Once
	var wg sync.WaitGroup
	halt := func() {
		once.Do(func() { close(stop); cancelNemesis() })
		wg.Wait()
	}
	t.Cleanup(halt) // a failed test leaves nothing running

	// The last value seen per key: what compare-and-sets expect, so that many of them swap.
	var seenMu sync.Mutex
	seen := map[string]string{}
	note := func(k, v string) {
		seenMu.Lock()
		seen[k] = v
		seenMu.Unlock()
	}
	guess := func(k string) string {
		seenMu.Lock()
		defer seenMu.Unlock()
		return seen[k]
	}

	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			client := g
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				live := c.Live()
				if len(live) == 0 {
					continue
				}
				idx := live[(g+i)%len(live)]
				db := c.Node(idx)
				if db == nil {
					continue // killed meanwhile
				}
				val := fmt.Sprintf("g%d.%d", g, i)
				k := keys[rng.IntN(len(keys))]
				var (
					name       string
					in         []linInput
					out        linOutput
					readFailed bool
					err        error
				)
				opCtx, cancel := context.WithTimeout(ctx, opTimeout)
				call := r.now()
				switch p := rng.IntN(100); {
				case p < 40:
					name, in = "get", []linInput{{kind: linGet, key: k}}
					err = db.View(opCtx, func(tx *bondkv.Txn) error {
						v, err := tx.Get([]byte(k))
						if errors.Is(err, bondkv.ErrNotFound) {
							out.value = ""
							return nil
						}
						out.value = string(v)
						return err
					})
				case p < 65:
					name, in = "put", []linInput{{kind: linPut, key: k, value: val}}
					err = db.Update(opCtx, func(tx *bondkv.Txn) error { return tx.Put([]byte(k), []byte(val)) })
				case p < 90:
					exp := guess(k)
					name, in = "cas", []linInput{{kind: linCAS, key: k, value: val, expect: exp}}
					err = db.Update(opCtx, func(tx *bondkv.Txn) error {
						out.swapped, readFailed = false, false
						v, err := tx.Get([]byte(k))
						if err != nil && !errors.Is(err, bondkv.ErrNotFound) {
							readFailed = true
							return err
						}
						out.value = string(v)
						if out.value != exp {
							return nil
						}
						out.swapped = true
						return tx.Put([]byte(k), []byte(val))
					})
				default: // one key of each range: a two-phase commit
					k1, k2 := keys[rng.IntN(2)], keys[2+rng.IntN(2)]
					v1, v2 := val+"x", val+"y"
					name, in = "2pc", []linInput{{kind: linPut, key: k1, value: v1}, {kind: linPut, key: k2, value: v2}}
					err = db.Update(opCtx, func(tx *bondkv.Txn) error {
						if err := tx.Put([]byte(k1), []byte(v1)); err != nil {
							return err
						}
						return tx.Put([]byte(k2), []byte(v2))
					})
				}
				ret := r.now()
				cancel()
				ops := make([]porcupine.Operation, len(in))
				switch {
				case err == nil:
					for j, x := range in {
						switch {
						case x.kind == linPut || x.kind == linCAS && out.swapped:
							note(x.key, x.value)
						case out.value != "":
							note(x.key, out.value)
						}
						ops[j] = porcupine.Operation{ClientId: client, Input: x, Call: call, Output: out, Return: ret,
							Metadata: fmt.Sprintf("node %d", idx+1)}
					}
					what := name + " ok"
					if name == "cas" && out.swapped {
						what = "cas swapped"
					} else if name == "cas" {
						what = "cas not swapped"
					}
					r.record(what, ops...)
				case name == "get" || readFailed:
					r.failed(err)
					r.record(name + " dropped") // observed nothing, or proposed nothing
				default:
					// Unknown outcome: it may apply at any time from its call on, so it
					// returns at the end of the history, and this client goes on under a
					// new ID.
					r.failed(err)
					for j, x := range in {
						ops[j] = porcupine.Operation{ClientId: client, Input: x, Call: call,
							Output: linOutput{unknown: true}, Return: -1,
							Metadata: fmt.Sprintf("node %d: %v", idx+1, err)}
					}
					r.record(name+" unknown", ops...)
					client = int(r.clients.Add(1) - 1)
				}
			}
		}()
	}

	// The nemesis: move the user range's leadership every second; kill the node leading it at
	// killAt and restart it downFor later.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, clients))
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		killed, killedAt := -1, time.Duration(0)
		defer func() {
			if killed >= 0 { // stopped early: leave the cluster whole
				if err := c.Restart(killed); err != nil {
					t.Errorf("restart node %d: %v", killed+1, err)
				}
			}
		}()
		logf := func(format string, args ...any) {
			t.Logf("%v: "+format, append([]any{time.Since(r.start).Round(time.Millisecond)}, args...)...)
		}
		nextMove := time.Second
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			select {
			case <-stop: // both were ready: stopping wins
				return
			default:
			}
			now := time.Since(r.start)
			switch {
			case now >= killAt && killedAt == 0:
				l, err := c.WaitLeader(nctx)
				if err != nil {
					t.Errorf("leader before the kill: %v", err)
					return
				}
				if err := c.Kill(l); err != nil {
					t.Errorf("kill node %d: %v", l+1, err)
					return
				}
				killed, killedAt = l, now
				logf("killed node %d (the leader)", l+1)
			case killed >= 0 && now >= killedAt+downFor:
				err := c.Restart(killed)
				if err != nil {
					t.Errorf("restart node %d: %v", killed+1, err)
				}
				logf("restarted node %d: %v", killed+1, err)
				killed = -1
			case now >= nextMove:
				nextMove = now + time.Second
				live := c.Live()
				if len(live) < 2 {
					continue
				}
				db := c.Node(live[0])
				if db == nil {
					continue
				}
				cur, _ := db.Inspect().Leader()
				target := live[rng.IntN(len(live))]
				if c.NodeID(target) == cur {
					target = live[(slices.Index(live, target)+1)%len(live)]
				}
				tctx, cancel := context.WithTimeout(nctx, 2*time.Second)
				err := db.Inspect().TransferLeader(tctx, c.NodeID(target))
				cancel()
				logf("move leadership %d → %d: %v", cur, target+1, err)
			}
		}
	}()

	time.Sleep(run) // the clients and the nemesis run for a fixed time
	halt()
	end := r.now() + 1
	history := r.ops
	for i := range history {
		if history[i].Return < 0 {
			history[i].Return = end
		}
	}
	var st bondkv.TxnStats
	for _, i := range c.Live() {
		s := c.Node(i).Inspect().TxnStats()
		st.Commits1PC += s.Commits1PC
		st.Commits2PC += s.Commits2PC
		st.CommitsReadOnly += s.CommitsReadOnly
		st.Conflicts += s.Conflicts
	}
	perSecond := make([]int, end/int64(time.Second)+1) // completed operations, by second
	for _, op := range history {
		if op.Return < end {
			perSecond[op.Return/int64(time.Second)]++
		}
	}
	t.Logf("%v of operations: %v; history of %d entries, completed per second %v; txn stats of the live nodes %+v",
		time.Duration(end).Round(time.Millisecond), r.counts, len(history), perSecond, st)

	began := time.Now()
	res, info := porcupine.CheckOperationsVerbose(linModel, history, checkTime)
	t.Logf("porcupine: %s in %v", res, time.Since(began).Round(time.Millisecond))
	if res != porcupine.Ok {
		path := "(none)"
		f, err := os.CreateTemp("", "bondkv-txn-linearizability-*.html")
		if err == nil {
			path = f.Name()
			_ = f.Close()
			if err := porcupine.VisualizePath(linModel, info, path); err != nil {
				path = fmt.Sprintf("(visualization failed: %v)", err)
			}
		}
		t.Fatalf("history is %s (seed %d); visualization: %s", res, seed, path)
	}
	for _, what := range []string{"get ok", "put ok", "cas swapped", "2pc ok"} {
		if r.counts[what] == 0 {
			t.Errorf("no %q operation: that kind went unchecked", what)
		}
	}
}

// TestLinearizabilityCheckerCatchesStaleReads guards the model of TestTxnLinearizability: it
// must reject a read of a value overwritten before the read began (and accept what is legal).
func TestLinearizabilityCheckerCatchesStaleReads(t *testing.T) {
	op := func(client int, in linInput, out linOutput, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret}
	}
	put := func(v string) linInput { return linInput{kind: linPut, key: "k", value: v} }
	get := linInput{kind: linGet, key: "k"}
	cas := func(exp, v string) linInput { return linInput{kind: linCAS, key: "k", value: v, expect: exp} }
	other := op(2, linInput{kind: linPut, key: "other", value: "z"}, linOutput{}, 0, 100)
	for _, tc := range []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"stale read", []porcupine.Operation{
			op(0, put("a"), linOutput{}, 0, 10),
			op(0, put("b"), linOutput{}, 20, 30),
			op(1, get, linOutput{value: "a"}, 40, 50),
			other,
		}, porcupine.Illegal},
		{"read concurrent with the overwrite", []porcupine.Operation{
			op(0, put("a"), linOutput{}, 0, 10),
			op(0, put("b"), linOutput{}, 20, 45),
			op(1, get, linOutput{value: "a"}, 40, 50),
			other,
		}, porcupine.Ok},
		{"read of a value never written", []porcupine.Operation{
			op(1, get, linOutput{value: "a"}, 40, 50),
		}, porcupine.Illegal},
		{"two cas from one value both swapped", []porcupine.Operation{
			op(0, put("a"), linOutput{}, 0, 10),
			op(0, cas("a", "b"), linOutput{swapped: true}, 20, 30),
			op(1, cas("a", "c"), linOutput{swapped: true}, 20, 30),
		}, porcupine.Illegal},
		{"cas that did not swap read a stale value", []porcupine.Operation{
			op(0, put("a"), linOutput{}, 0, 10),
			op(0, put("b"), linOutput{}, 20, 30),
			op(1, cas("c", "d"), linOutput{value: "a"}, 40, 50),
		}, porcupine.Illegal},
		{"cas that did not swap read the current value", []porcupine.Operation{
			op(0, put("a"), linOutput{}, 0, 10),
			op(0, put("b"), linOutput{}, 20, 30),
			op(1, cas("c", "d"), linOutput{value: "b"}, 40, 50),
			op(1, get, linOutput{value: "b"}, 60, 70),
		}, porcupine.Ok},
		{"unknown put seen later", []porcupine.Operation{
			op(0, put("a"), linOutput{}, 0, 10),
			op(0, put("b"), linOutput{unknown: true}, 20, 100),
			op(1, get, linOutput{value: "b"}, 40, 50),
			op(1, get, linOutput{value: "b"}, 60, 70),
		}, porcupine.Ok},
		{"unknown put seen, then not", []porcupine.Operation{
			op(0, put("a"), linOutput{}, 0, 10),
			op(0, put("b"), linOutput{unknown: true}, 20, 100),
			op(1, get, linOutput{value: "b"}, 40, 50),
			op(1, get, linOutput{value: "a"}, 60, 70),
		}, porcupine.Illegal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res := porcupine.CheckOperationsTimeout(linModel, tc.history, 5*time.Second); res != tc.want {
				t.Fatalf("checker says %s, want %s", res, tc.want)
			}
		})
	}
}
