package netsim_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bondkv/bondkv/internal/netsim"
)

// echoServer serves node's end of every conn by echoing what it reads, until the test ends.
func echoServer(t *testing.T, n *netsim.Network, node uint64) string {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := n.Listener(nodeID(node), raw)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return raw.Addr().String()
}

func dialT(t *testing.T, n *netsim.Network, from uint64, addr string) net.Conn {
	t.Helper()
	c, err := n.Dialer(nodeID(from))(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo writes msg and reads it back, returning the round-trip time.
func echo(c net.Conn, msg []byte) (time.Duration, error) {
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		return 0, err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return 0, err
	}
	if string(got) != string(msg) {
		return 0, errors.New("echo mismatch")
	}
	return time.Since(start), nil
}

func TestConnLatencyAndBandwidth(t *testing.T) {
	n := netsim.New()
	n.SetLink(1, 2, netsim.Link{Latency: 20 * time.Millisecond})
	n.SetLink(2, 1, netsim.Link{Latency: 10 * time.Millisecond})
	addr := echoServer(t, n, 2)
	c := dialT(t, n, 1, addr)
	for range 3 {
		rtt, err := echo(c, []byte("ping"))
		if err != nil {
			t.Fatal(err)
		}
		if rtt < 30*time.Millisecond || rtt > 200*time.Millisecond {
			t.Fatalf("round trip %v, want ≥ 30 ms", rtt)
		}
	}

	// 256 KiB at 1 MiB/s: ≥ 250 ms. The echo streams, so the way back overlaps the way there.
	n.SetLink(1, 2, netsim.Link{Bandwidth: 1 << 20})
	n.SetLink(2, 1, netsim.Link{Bandwidth: 1 << 20})
	rtt, err := echo(c, make([]byte, 256<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("256 KiB echoed over 1 MiB/s links in %v", rtt)
	if rtt < 250*time.Millisecond || rtt > 3*time.Second {
		t.Fatalf("256 KiB echo over 1 MiB/s took %v, want ≥ 250 ms", rtt)
	}
	if s := n.Stats(1, 2); s.DeliveredBytes != 3*4+256<<10 {
		t.Fatalf("stats 1->2: %+v", s)
	}
}

func TestConnPartition(t *testing.T) {
	n := netsim.New()
	n.SetDefaultLink(netsim.Link{Latency: 5 * time.Millisecond})
	addr := echoServer(t, n, 2)
	c := dialT(t, n, 1, addr)
	if _, err := echo(c, []byte("hello")); err != nil {
		t.Fatal(err)
	}

	// Reads blocked on a conn fail when the link is cut, even one way and from the far side.
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	n.Partition(2, 1)
	select {
	case err := <-readErr:
		if !errors.Is(err, netsim.ErrPartitioned) {
			t.Fatalf("read across a cut: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read not failed by the partition")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, netsim.ErrPartitioned) {
		t.Fatalf("write across a cut: %v", err)
	}
	_, err := n.Dialer(1)(context.Background(), addr)
	var pe *netsim.PartitionError
	if !errors.As(err, &pe) || pe.From != 1 || pe.To != 2 {
		t.Fatalf("dial across a cut: %v", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || ne.Timeout() {
		t.Fatalf("a partition should be a net.Error that is not a timeout: %v", err)
	}

	n.Heal(2, 1)
	c2 := dialT(t, n, 1, addr)
	if _, err := echo(c2, []byte("again")); err != nil {
		t.Fatalf("after heal: %v", err)
	}

	// Isolating the dialer breaks the new conn too.
	n.Isolate(1)
	if _, err := echo(c2, []byte("x")); !errors.Is(err, netsim.ErrPartitioned) {
		t.Fatalf("echo from an isolated node: %v", err)
	}
	n.HealAll()
}

func TestConnReadDeadline(t *testing.T) {
	n := netsim.New()
	n.SetDefaultLink(netsim.Link{Latency: 30 * time.Millisecond})
	addr := echoServer(t, n, 2)
	c := dialT(t, n, 1, addr)
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	if _, err := echo(c, []byte("ok")); err != nil {
		t.Fatalf("after clearing the deadline: %v", err)
	}
	// A deadline set while a read waits on a slow link.
	c.Write([]byte("z"))
	c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read before the data is due: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}

func TestConnClose(t *testing.T) {
	n := netsim.New()
	addr := echoServer(t, n, 2)
	c := dialT(t, n, 1, addr)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	c.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed conn: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed conn: %v", err)
	}
}
