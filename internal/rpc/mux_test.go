package rpc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// startMux runs a Mux on a fresh TCP port until the test ends.
func startMux(t testing.TB, timeout time.Duration) *Mux {
	t.Helper()
	m := newMux(listen(t), nil, timeout)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Mux.Close: %v", err)
		}
	})
	return m
}

// dialWrite dials addr and writes p.
func dialWrite(t testing.TB, addr string, p []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(p); err != nil {
		t.Fatal(err)
	}
	return c
}

// acceptRead accepts one conn from ln and reads n bytes from it.
func acceptRead(t testing.TB, ln net.Listener, n int) []byte {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, n)
		_, err = io.ReadFull(c, b)
		ch <- result{b, err}
	}()
	r := recv(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.b
}

// expectClosedByPeer checks that the other end closes c within 10 s.
func expectClosedByPeer(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("conn not closed by the mux: %v", err)
	}
}

func TestMuxClassifies(t *testing.T) {
	m := startMux(t, classifyTimeout)
	addr := m.Addr().String()

	raft := append([]byte{0xB0, 0x4B}, "frame"...)
	dialWrite(t, addr, raft)
	if got := acceptRead(t, m.Raft(), len(raft)); !bytes.Equal(got, raft) {
		t.Fatalf("raft conn read %q, want %q", got, raft)
	}

	for _, p := range [][]byte{
		[]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
		{0xB0, 0x00, 1, 2}, // half the magic is not the magic
		{0x4B, 0xB0},
	} {
		dialWrite(t, addr, p)
		if got := acceptRead(t, m.Service(), len(p)); !bytes.Equal(got, p) {
			t.Fatalf("service conn read %q, want %q", got, p)
		}
	}

	// The magic split over two writes is still the magic.
	c := dialWrite(t, addr, []byte{0xB0})
	time.Sleep(10 * time.Millisecond)
	if _, err := c.Write([]byte{0x4B, 7}); err != nil {
		t.Fatal(err)
	}
	if got := acceptRead(t, m.Raft(), 3); !bytes.Equal(got, []byte{0xB0, 0x4B, 7}) {
		t.Fatalf("split magic read %q", got)
	}
}

func TestMuxSilentConnDoesNotStallOthers(t *testing.T) {
	m := startMux(t, time.Second)
	addr := m.Addr().String()
	silent := dialWrite(t, addr, nil)           // never sends
	halfway := dialWrite(t, addr, []byte{0xB0}) // sends one byte only
	start := time.Now()
	for range 3 {
		p := []byte{0xB0, 0x4B, 1}
		dialWrite(t, addr, p)
		acceptRead(t, m.Raft(), len(p))
		dialWrite(t, addr, []byte("PRI"))
		acceptRead(t, m.Service(), 3)
	}
	if d := time.Since(start); d > 800*time.Millisecond {
		t.Fatalf("classifying 6 conns took %v behind silent ones", d)
	}
	expectClosedByPeer(t, silent)
	expectClosedByPeer(t, halfway)
}

func TestMuxCloseOneListener(t *testing.T) {
	m := startMux(t, classifyTimeout)
	addr := m.Addr().String()
	if err := m.Raft().Close(); err != nil {
		t.Fatal(err)
	}
	m.Raft().Close() // idempotent
	if _, err := m.Raft().Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v, want net.ErrClosed", err)
	}
	expectClosedByPeer(t, dialWrite(t, addr, []byte{0xB0, 0x4B}))
	// The service side is untouched.
	dialWrite(t, addr, []byte("PRI"))
	if got := acceptRead(t, m.Service(), 3); string(got) != "PRI" {
		t.Fatalf("got %q", got)
	}
	if m.Service().Addr().String() != addr || m.Raft().Addr().String() != addr {
		t.Fatal("virtual listeners report another address")
	}
}

func TestMuxClose(t *testing.T) {
	m := newMux(listen(t), nil, classifyTimeout)
	addr := m.Addr().String()
	pending := dialWrite(t, addr, nil)
	// The mux has accepted it before Close for sure once another conn got through.
	dialWrite(t, addr, []byte("PRI"))
	acceptRead(t, m.Service(), 3)
	waiting := dialWrite(t, addr, []byte("PRI")) // classified, nobody accepts it

	accepted := make(chan error, 1)
	go func() {
		_, err := m.Raft().Accept() // blocked when Close comes
		accepted <- err
	}()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := recv(t, accepted); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked Accept: %v, want net.ErrClosed", err)
	}
	if _, err := m.Service().Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	expectClosedByPeer(t, pending)
	expectClosedByPeer(t, waiting)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the mux's listener still accepts")
	}
}

// TestMuxRaftAndService runs the real Raft transport and the gRPC service of two nodes on one
// address each.
func TestMuxRaftAndService(t *testing.T) {
	type node struct {
		mux  *Mux
		tr   *raftTransport
		sink *sink
		srv  *testServer
	}
	start := func() *node {
		n := &node{mux: startMux(t, classifyTimeout), sink: newSink(), srv: newTestServer(t)}
		f := RaftTransportFactory{Listen: func(string) (net.Listener, error) { return n.mux.Raft(), nil }}
		n.tr, _ = startTransport(t, f, n.mux.Addr().String(), n.sink)
		serve(t, n.srv.Server, n.mux.Service())
		return n
	}
	a, b := start(), start()
	addrA, addrB := a.mux.Addr().String(), b.mux.Addr().String()
	c := newTestClient(t, nil)
	ctx := context.Background()

	ab, err := a.tr.GetConnection(ctx, addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer ab.Close()
	ba, err := b.tr.GetConnection(ctx, addrA)
	if err != nil {
		t.Fatal(err)
	}
	defer ba.Close()
	for i := range 20 {
		if err := ab.SendMessageBatch(testBatch(i, []byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
		if err := ba.SendMessageBatch(testBatch(100+i, nil)); err != nil {
			t.Fatal(err)
		}
		for _, addr := range []string{addrA, addrB} {
			if resp, err := c.Call(ctx, addr, "Echo", []byte{byte(i)}); err != nil || !bytes.Equal(resp, []byte{byte(i)}) {
				t.Fatalf("Echo at %s = %q, %v", addr, resp, err)
			}
		}
	}
	for i := range 20 {
		if got := recv(t, b.sink.batches); got.Requests[0].LogIndex != uint64(i) {
			t.Fatalf("b got index %d, want %d", got.Requests[0].LogIndex, i)
		}
		if got := recv(t, a.sink.batches); got.Requests[0].LogIndex != uint64(100+i) {
			t.Fatalf("a got index %d, want %d", got.Requests[0].LogIndex, 100+i)
		}
	}

	// Closing b's transport closes its Raft listener only: b's service keeps working.
	b.tr.Close()
	if _, err := c.Call(ctx, addrB, "Echo", nil); err != nil {
		t.Fatalf("service after the Raft transport closed: %v", err)
	}
	c.Forget(addrB) // a new connection goes through the mux again
	if _, err := c.Call(ctx, addrB, "Echo", nil); err != nil {
		t.Fatalf("new service conn after the Raft transport closed: %v", err)
	}
}
