package raftgroup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/store"
)

func putCmd(k, v []byte) []store.Command {
	return []store.Command{{Op: store.OpPut, Key: k, Value: v}}
}

// TestProposeBatchesConcurrentWrites: concurrent writers share entries, and every one of them is
// applied.
func TestProposeBatchesConcurrentWrites(t *testing.T) {
	h := newHarness(t)
	h.cluster(1)
	host := h.nodes[1].host
	const writers = 200
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			res, err := host.Propose(context.Background(), testRange, putCmd([]byte(fmt.Sprintf("k%03d", i)), []byte("v")))
			if err == nil && res.Code != store.ResultApplied {
				err = fmt.Errorf("result %v", res.Code)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := host.ProposalStats(testRange)
	if st.Commands != writers || st.Entries >= st.Commands {
		t.Fatalf("stats %+v: want %d commands in fewer entries", st, writers)
	}
	for i := range writers {
		if got, err := h.get(1, fmt.Sprintf("k%03d", i)); err != nil || got != "v" {
			t.Fatalf("k%03d: %q, %v", i, got, err)
		}
	}
}

// TestProposeDoesNotKeepCallerBuffers: a caller whose context ends may reuse its buffers at
// once; whatever is applied later is what it passed, never what it wrote afterwards (and -race
// sees no shared access).
func TestProposeDoesNotKeepCallerBuffers(t *testing.T) {
	h := newHarness(t)
	h.cluster(1)
	host := h.nodes[1].host
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			key := []byte(fmt.Sprintf("k%03d", i))
			val := bytes.Repeat([]byte{'a'}, 64)
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%5)*100*time.Microsecond)
			_, err := host.Propose(ctx, testRange, putCmd(key, val))
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("propose: %v", err)
			}
			for j := range val {
				val[j] = 'X'
			}
			copy(key, "XXXX")
		})
	}
	wg.Wait()
	// Let anything still in flight apply, then check what is there.
	h.put(1, "last", "x")
	kvs, err := h.nodes[1].engine.Scan(base.FullSpan, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if bytes.HasPrefix(kv.Key, []byte("XXXX")) || bytes.Contains(kv.Value.Data, []byte("X")) && string(kv.Key) != "last" {
			t.Fatalf("applied a buffer the caller had reused: %q=%q", kv.Key, kv.Value.Data)
		}
	}
}

// TestProposeRejectsInvalidCommandsAlone: an invalid command fails on its own, before it could
// share an entry with (and sink) valid ones.
func TestProposeRejectsInvalidCommandsAlone(t *testing.T) {
	h := newHarness(t)
	h.cluster(1)
	host := h.nodes[1].host
	var wg sync.WaitGroup
	var bad, good error
	wg.Go(func() { _, bad = host.Propose(context.Background(), testRange, putCmd(nil, []byte("v"))) })
	wg.Go(func() { _, good = host.Propose(context.Background(), testRange, putCmd([]byte("ok"), []byte("v"))) })
	wg.Wait()
	if !errors.Is(bad, base.ErrEmptyKey) || good != nil {
		t.Fatalf("bad: %v, good: %v", bad, good)
	}
}

// TestProposeWithoutQuorum: with no leader, proposals honour their context, and closing the
// host ends the ones still waiting instead of leaving them hanging.
func TestProposeWithoutQuorum(t *testing.T) {
	h := newHarness(t)
	for id := base.NodeID(1); id <= 3; id++ {
		h.add(id)
	}
	n1 := h.nodes[1]
	n1.start(t)
	// Three voters, only one running: no quorum, no leader.
	if err := n1.host.StartReplica(Replica{Range: testRange, Members: h.members(1, 2, 3)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	start := time.Now()
	_, err := n1.host.Propose(ctx, testRange, putCmd([]byte("k"), []byte("v")))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("propose without quorum: %v after %v", err, time.Since(start))
	}

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			_, err := n1.host.Propose(context.Background(), testRange, putCmd([]byte(fmt.Sprintf("w%d", i)), []byte("v")))
			errs <- err
		})
	}
	time.Sleep(50 * time.Millisecond) // let them queue; the outcome does not depend on it
	n1.stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, base.ErrClosed) && !errors.Is(err, base.ErrAmbiguous) {
			t.Fatalf("pending proposal at close: %v", err)
		}
	}
}
