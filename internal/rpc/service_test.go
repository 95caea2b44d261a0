package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/internal/netsim"
)

// listen returns a TCP listener on a free loopback port.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serve runs s on ln until the test ends, then stops it and checks that Serve returned nil.
func serve(t testing.TB, s *Server, ln net.Listener) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// testServer is a Server with the methods the tests call:
//
//	Echo   returns its request
//	Fail   returns an error carrying its request
//	Block  waits for its context to end (or for release to be closed)
type testServer struct {
	*Server
	started chan struct{} // Block has started (one send per call)
	release chan struct{} // close to let Block return
	ended   chan error    // what Block saw: its ctx's error, or nil when released
}

func newTestServer(t testing.TB) *testServer {
	ts := &testServer{Server: NewServer(nil), started: make(chan struct{}, 16),
		release: make(chan struct{}), ended: make(chan error, 16)}
	ts.Handle("Echo", func(_ context.Context, req []byte) ([]byte, error) { return req, nil })
	ts.Handle("Fail", func(_ context.Context, req []byte) ([]byte, error) {
		return nil, fmt.Errorf("failing on %q", req)
	})
	ts.Handle("Block", func(ctx context.Context, _ []byte) ([]byte, error) {
		ts.started <- struct{}{}
		select {
		case <-ctx.Done():
			ts.ended <- ctx.Err()
			return nil, ctx.Err()
		case <-ts.release:
			ts.ended <- nil
			return []byte("released"), nil
		}
	})
	return ts
}

// startTestServer serves a testServer on a fresh TCP port.
func startTestServer(t testing.TB) (*testServer, string) {
	t.Helper()
	ts := newTestServer(t)
	ln := listen(t)
	serve(t, ts.Server, ln)
	return ts, ln.Addr().String()
}

func newTestClient(t testing.TB, dial func(context.Context, string) (net.Conn, error)) *Client {
	c := NewClient(dial, nil)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCallRoundTrip(t *testing.T) {
	_, addr := startTestServer(t)
	c := newTestClient(t, nil)
	ctx := context.Background()
	for _, req := range [][]byte{[]byte("hello"), {0, 1, 2, 0xff}, nil} {
		resp, err := c.Call(ctx, addr, "Echo", req)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(resp, req) {
			t.Fatalf("Echo(%q) = %q", req, resp)
		}
	}
	// The caller owns req again once Call returns.
	req := []byte("reused")
	resp, err := c.Call(ctx, addr, "Echo", req)
	if err != nil {
		t.Fatal(err)
	}
	copy(req, "XXXXXX")
	if string(resp) != "reused" {
		t.Fatalf("response aliases the request: %q", resp)
	}
}

func TestCallUnknownMethod(t *testing.T) {
	_, addr := startTestServer(t)
	c := newTestClient(t, nil)
	_, err := c.Call(context.Background(), addr, "NoSuchMethod", nil)
	if !errors.Is(err, ErrUnknownMethod) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown method: %v, want ErrUnknownMethod", err)
	}
	// A server with no methods at all says the same.
	empty := NewServer(nil)
	ln := listen(t)
	serve(t, empty, ln)
	if _, err := c.Call(context.Background(), ln.Addr().String(), "Echo", nil); !errors.Is(err, ErrUnknownMethod) {
		t.Fatalf("server without methods: %v, want ErrUnknownMethod", err)
	}
}

func TestCallHandlerError(t *testing.T) {
	_, addr := startTestServer(t)
	c := newTestClient(t, nil)
	_, err := c.Call(context.Background(), addr, "Fail", []byte("x"))
	var re *RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("handler error: %v (%T), want *RemoteError", err, err)
	}
	if re.Method != "Fail" || re.Msg != `failing on "x"` {
		t.Fatalf("got %+v", re)
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnknownMethod) {
		t.Fatalf("remote error matches a sentinel: %v", err)
	}
}

// A handler's error that is itself a gRPC status (say, from a call it forwarded) must not be
// taken for this call's status: an Unavailable from a nested call would claim "not delivered".
func TestHandlerErrorHidesNestedStatus(t *testing.T) {
	dead := listen(t)
	dead.Close()
	addrDead := dead.Addr().String()
	inner := newTestClient(t, nil)
	s := NewServer(nil)
	s.Handle("Forward", func(ctx context.Context, req []byte) ([]byte, error) {
		_, err := inner.Call(ctx, addrDead, "Echo", req)
		return nil, err
	})
	ln := listen(t)
	serve(t, s, ln)
	c := newTestClient(t, nil)
	_, err := c.Call(context.Background(), ln.Addr().String(), "Forward", nil)
	var re *RemoteError
	if !errors.As(err, &re) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("forwarded failure: %v, want a *RemoteError only", err)
	}
}

func TestCallUnavailablePeer(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there
	c := newTestClient(t, nil)
	for range 3 { // the first call dials; later ones meet the connection in back-off
		_, err := c.Call(context.Background(), addr, "Echo", nil)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("closed port: %v, want ErrUnavailable", err)
		}
	}
	// A peer that cannot be reached before the deadline: not delivered, and the deadline.
	dial := func(ctx context.Context, _ string) (net.Conn, error) { <-ctx.Done(); return nil, ctx.Err() }
	slow := newTestClient(t, dial)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := slow.Call(ctx, addr, "Echo", nil)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unreachable until the deadline: %v, want ErrUnavailable and DeadlineExceeded", err)
	}
}

func TestCallDeadlineAndCancel(t *testing.T) {
	ts, addr := startTestServer(t)
	c := newTestClient(t, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Call(ctx, addr, "Block", nil)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("deadline: %v, want DeadlineExceeded (and not ErrUnavailable)", err)
	}
	recv(t, ts.started)
	// The handler's context ends too: by its own copy of the deadline, or by the caller's
	// cancellation, whichever arrives first.
	if got := recv(t, ts.ended); got == nil {
		t.Fatal("handler released, want its context ended")
	}

	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		<-ts.started
		cancel()
	}()
	_, err = c.Call(ctx, addr, "Block", nil)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancel: %v, want Canceled (and not ErrUnavailable)", err)
	}
	if got := recv(t, ts.ended); !errors.Is(got, context.Canceled) {
		t.Fatalf("handler saw %v, want Canceled", got)
	}
}

func TestCallLargeMessage(t *testing.T) {
	_, addr := startTestServer(t)
	c := newTestClient(t, nil)
	req := make([]byte, 8<<20)
	for i := range req {
		req[i] = byte(i * 31)
	}
	resp, err := c.Call(context.Background(), addr, "Echo", req)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp, req) {
		t.Fatal("8 MiB echo differs")
	}
	_, err = c.Call(context.Background(), addr, "Echo", make([]byte, MaxMessageSize+1))
	var re *RemoteError
	if err == nil || errors.As(err, &re) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("oversized request: %v", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	_, addr1 := startTestServer(t)
	_, addr2 := startTestServer(t)
	c := newTestClient(t, nil)
	var wg sync.WaitGroup
	var ok atomic.Int64
	errc := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				addr := addr1
				if (g+i)%2 == 1 {
					addr = addr2
				}
				if i%10 == 9 && g == 0 {
					c.Forget(addr) // in-flight calls of others may fail; later ones redial
					continue
				}
				req := fmt.Appendf(nil, "%d/%d", g, i)
				resp, err := c.Call(context.Background(), addr, "Echo", req)
				if err != nil {
					continue // a call on a forgotten connection; counted below
				}
				ok.Add(1)
				if !bytes.Equal(resp, req) {
					errc <- fmt.Errorf("Echo(%q) = %q", req, resp)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if n := ok.Load(); n < 16*45/2 {
		t.Errorf("only %d of %d calls succeeded", n, 16*45)
	}
	// Everything still works.
	if _, err := c.Call(context.Background(), addr1, "Echo", nil); err != nil {
		t.Fatal(err)
	}
}

func TestStopWhileHandlerRunning(t *testing.T) {
	t.Run("cancelled after grace", func(t *testing.T) {
		ts := newTestServer(t)
		ts.grace = 100 * time.Millisecond
		ln := listen(t)
		errc := make(chan error, 1)
		go func() { errc <- ts.Serve(ln) }()
		c := newTestClient(t, nil)
		callErr := make(chan error, 1)
		go func() {
			_, err := c.Call(context.Background(), ln.Addr().String(), "Block", nil)
			callErr <- err
		}()
		recv(t, ts.started)
		start := time.Now()
		ts.Stop()
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Stop took %v", d)
		}
		if got := recv(t, ts.ended); !errors.Is(got, context.Canceled) {
			t.Fatalf("handler saw %v, want Canceled", got)
		}
		if err := recv(t, errc); err != nil {
			t.Fatalf("Serve after Stop: %v", err)
		}
		if err := recv(t, callErr); err == nil || errors.Is(err, ErrUnavailable) {
			t.Fatalf("call cut by Stop: %v, want an ambiguous error", err)
		}
		ts.Stop() // idempotent
		if err := ts.Serve(listen(t)); !errors.Is(err, base.ErrClosed) {
			t.Fatalf("Serve after Stop: %v", err)
		}
		// New calls find nobody.
		if _, err := c.Call(context.Background(), ln.Addr().String(), "Echo", nil); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call after Stop: %v, want ErrUnavailable", err)
		}
	})
	t.Run("finishes within grace", func(t *testing.T) {
		ts := newTestServer(t)
		ln := listen(t)
		errc := make(chan error, 1)
		go func() { errc <- ts.Serve(ln) }()
		c := newTestClient(t, nil)
		callErr := make(chan error, 1)
		go func() {
			resp, err := c.Call(context.Background(), ln.Addr().String(), "Block", nil)
			if err == nil && string(resp) != "released" {
				err = fmt.Errorf("got %q", resp)
			}
			callErr <- err
		}()
		recv(t, ts.started)
		stopped := make(chan struct{})
		go func() {
			ts.Stop()
			close(stopped)
		}()
		expectNothing(t, stopped, 50*time.Millisecond) // Stop waits for the handler
		close(ts.release)
		recv(t, stopped)
		if err := recv(t, callErr); err != nil {
			t.Fatalf("call that finished within the grace period: %v", err)
		}
		if err := recv(t, errc); err != nil {
			t.Fatalf("Serve after Stop: %v", err)
		}
	})
}

func TestClientCloseAndForget(t *testing.T) {
	_, addr := startTestServer(t)
	c := NewClient(nil, nil)
	if _, err := c.Call(context.Background(), addr, "Echo", nil); err != nil {
		t.Fatal(err)
	}
	c.Forget(addr)
	c.Forget("127.0.0.1:1") // unknown: nothing happens
	if _, err := c.Call(context.Background(), addr, "Echo", nil); err != nil {
		t.Fatalf("call after Forget: %v", err)
	}
	c.Close()
	c.Close()
	if _, err := c.Call(context.Background(), addr, "Echo", nil); !errors.Is(err, base.ErrClosed) {
		t.Fatalf("call after Close: %v, want ErrClosed", err)
	}
}

func TestHandleMisuse(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	s := NewServer(nil)
	h := func(context.Context, []byte) ([]byte, error) { return nil, nil }
	s.Handle("A", h)
	mustPanic("duplicate", func() { s.Handle("A", h) })
	mustPanic("empty name", func() { s.Handle("", h) })
	mustPanic("slash", func() { s.Handle("a/b", h) })
	mustPanic("nil handler", func() { s.Handle("B", nil) })
	serve(t, s, listen(t))
	waitFor(t, "Serve to start", s.isServing)
	mustPanic("after Serve", func() { s.Handle("C", h) })
}

func (s *Server) isServing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registered
}

// TestCallOverNetsim runs the service over netsim's dialer and listener: a partition makes
// new calls fail with ErrUnavailable, healing it makes them succeed again.
func TestCallOverNetsim(t *testing.T) {
	const client, server = base.NodeID(1), base.NodeID(2)
	n := netsim.New()
	ts := newTestServer(t)
	raw := listen(t)
	serve(t, ts.Server, n.Listener(server, raw))
	addr := raw.Addr().String()
	c := newTestClient(t, n.Dialer(client))
	ctx := context.Background()
	if resp, err := c.Call(ctx, addr, "Echo", []byte("over netsim")); err != nil || string(resp) != "over netsim" {
		t.Fatalf("Echo = %q, %v", resp, err)
	}

	n.PartitionBoth(client, server)
	// The cached connection breaks; a call racing with that may fail ambiguously, but none
	// succeeds, and soon every new call is known not to have been delivered.
	waitFor(t, "ErrUnavailable over a partition", func() bool {
		_, err := c.Call(ctx, addr, "Echo", nil)
		if err == nil {
			t.Fatal("call succeeded across a partition")
		}
		return errors.Is(err, ErrUnavailable)
	})
	if _, err := newTestClient(t, n.Dialer(client)).Call(ctx, addr, "Echo", nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("new client across a partition: %v, want ErrUnavailable", err)
	}

	n.HealAll()
	waitFor(t, "calls after healing", func() bool {
		_, err := c.Call(ctx, addr, "Echo", nil)
		return err == nil
	})
}

// waitFor polls cond until it holds, for at most 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
