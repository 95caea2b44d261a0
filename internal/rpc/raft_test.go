package rpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/bondkv/bondkv/internal/base"
)

// sink collects what a transport hands to dragonboat.
type sink struct {
	batches chan pb.MessageBatch
	chunks  chan pb.Chunk
	accept  func(pb.Chunk) bool // nil = accept every chunk
}

func newSink() *sink {
	return &sink{batches: make(chan pb.MessageBatch, 1024), chunks: make(chan pb.Chunk, 1024)}
}

func (s *sink) onBatch(b pb.MessageBatch) { s.batches <- b }
func (s *sink) onChunk(c pb.Chunk) bool {
	if s.accept != nil && !s.accept(c) {
		return false
	}
	s.chunks <- c
	return true
}

// syncBuffer is a goroutine-safe log destination.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startTransport starts a transport on addr ("127.0.0.1:0" picks a port) and returns it with
// its actual address. It is closed when the test ends.
func startTransport(t testing.TB, f RaftTransportFactory, addr string, s *sink) (*raftTransport, string) {
	t.Helper()
	tr := f.Create(config.NodeHostConfig{RaftAddress: addr}, s.onBatch, s.onChunk).(*raftTransport)
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, tr.ln.Addr().String()
}

func testBatch(i int, payload []byte) pb.MessageBatch {
	return pb.MessageBatch{
		DeploymentId:  7,
		SourceAddress: "src",
		BinVer:        raftio.TransportBinVersion,
		Requests: []pb.Message{{
			Type: pb.Replicate, ShardID: 3, From: 1, To: 2, Term: 5, LogIndex: uint64(i),
			Entries: []pb.Entry{{Term: 5, Index: uint64(i) + 1, Cmd: payload}},
		}},
	}
}

func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received within 10s")
		panic("unreachable")
	}
}

func expectNothing[T any](t testing.TB, ch <-chan T, within time.Duration) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected delivery: %+v", v)
	case <-time.After(within):
	}
}

func TestValidate(t *testing.T) {
	var f RaftTransportFactory
	for addr, want := range map[string]bool{
		"127.0.0.1:5000": true, "localhost:1": true, "[::1]:65535": true, "node-3.example:7100": true,
		"127.0.0.1:0": false, "127.0.0.1:65536": false, ":5000": false, "127.0.0.1": false,
		"127.0.0.1:x": false, "": false, "a:b:c": false,
	} {
		if got := f.Validate(addr); got != want {
			t.Errorf("Validate(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestExchangeBatchesAndChunks(t *testing.T) {
	sa, sb := newSink(), newSink()
	a, addrA := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", sa)
	b, addrB := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", sb)
	ctx := context.Background()

	ab, err := a.GetConnection(ctx, addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer ab.Close()
	ba, err := b.GetConnection(ctx, addrA)
	if err != nil {
		t.Fatal(err)
	}
	defer ba.Close()
	for i := range 100 {
		if err := ab.SendMessageBatch(testBatch(i, []byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
		if err := ba.SendMessageBatch(testBatch(1000+i, nil)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 { // in order, intact
		got := recv(t, sb.batches)
		want := testBatch(i, []byte{byte(i)})
		if got.DeploymentId != 7 || got.SourceAddress != "src" || len(got.Requests) != 1 ||
			got.Requests[0].LogIndex != uint64(i) || !bytes.Equal(got.Requests[0].Entries[0].Cmd, want.Requests[0].Entries[0].Cmd) {
			t.Fatalf("batch %d: got %+v", i, got)
		}
		if got := recv(t, sa.batches); got.Requests[0].LogIndex != uint64(1000+i) {
			t.Fatalf("reverse batch %d: got index %d", i, got.Requests[0].LogIndex)
		}
	}

	// A snapshot of three 1 MiB chunks.
	sc, err := a.GetSnapshotConnection(ctx, addrB)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for i := range uint64(3) {
		data[0] = byte(i)
		ch := pb.Chunk{ShardID: 3, ReplicaID: 2, From: 1, ChunkId: i, ChunkCount: 3, Index: 10, Term: 5, Data: data}
		if err := sc.SendChunk(ch); err != nil {
			t.Fatal(err)
		}
	}
	sc.Close()
	for i := range uint64(3) {
		got := recv(t, sb.chunks)
		data[0] = byte(i)
		if got.ChunkId != i || got.ChunkCount != 3 || !bytes.Equal(got.Data, data) {
			t.Fatalf("chunk %d: id %d count %d, %d bytes", i, got.ChunkId, got.ChunkCount, len(got.Data))
		}
	}

	// Close is idempotent, and a closed transport refuses to dial.
	a.Close()
	a.Close()
	if _, err := a.GetConnection(ctx, addrB); !errors.Is(err, base.ErrClosed) {
		t.Fatalf("GetConnection after Close: %v, want ErrClosed", err)
	}
	if err := ab.SendMessageBatch(testBatch(0, nil)); !errors.Is(err, base.ErrClosed) {
		t.Fatalf("send after transport Close: %v, want ErrClosed", err)
	}
}

// frame builds a raw frame with an arbitrary header.
func frame(magic0 byte, version byte, kind frameKind, length uint32, sum uint32, payload []byte) []byte {
	h := make([]byte, frameHeaderSize)
	h[0], h[1], h[2], h[3] = magic0, frameMagic[1], version, byte(kind)
	binary.BigEndian.PutUint32(h[4:], length)
	binary.BigEndian.PutUint32(h[8:], sum)
	return append(h, payload...)
}

func goodFrame(kind frameKind, payload []byte) []byte {
	h := make([]byte, frameHeaderSize)
	putFrameHeader(h, kind, payload)
	return append(h, payload...)
}

func TestCorruptFramesCloseTheConnection(t *testing.T) {
	var logs syncBuffer
	s := newSink()
	_, addr := startTransport(t, RaftTransportFactory{Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		"127.0.0.1:0", s)

	good, err := (&pb.MessageBatch{DeploymentId: 1, SourceAddress: "x"}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := (&pb.Chunk{ShardID: 1, Data: []byte("abc")}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Repeat([]byte{0xff}, 64)
	sum := func(p []byte) uint32 {
		h := make([]byte, frameHeaderSize)
		putFrameHeader(h, kindBatch, p)
		return binary.BigEndian.Uint32(h[8:])
	}
	cases := []struct {
		name, log string
		raw       []byte
	}{
		{"bad magic", "bad magic", frame(0x00, frameVersion, kindBatch, uint32(len(good)), sum(good), good)},
		{"bad version", "unknown frame version", frame(frameMagic[0], 9, kindBatch, uint32(len(good)), sum(good), good)},
		{"unknown kind", "unknown frame", frame(frameMagic[0], frameVersion, 7, uint32(len(good)), sum(good), good)},
		{"bad crc", "checksum", frame(frameMagic[0], frameVersion, kindBatch, uint32(len(good)), sum(good)^1, good)},
		{"oversized", "exceeds", frame(frameMagic[0], frameVersion, kindBatch, MaxFrameSize+1, 0, nil)},
		{"undecodable batch", "undecodable message batch", goodFrame(kindBatch, garbage)},
		{"undecodable chunk", "undecodable snapshot chunk", goodFrame(kindChunk, garbage)},
		{"kinds mixed", "on a message batch connection", append(goodFrame(kindBatch, good), goodFrame(kindChunk, chunk)...)},
		{"truncated payload", "truncated", frame(frameMagic[0], frameVersion, kindBatch, 100, 0, good)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.raw); err != nil {
				t.Fatal(err)
			}
			if tc.name == "truncated payload" {
				c.(*net.TCPConn).CloseWrite()
			}
			// The server must close the connection: our read ends with EOF or a reset.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Fatalf("connection not closed by the server: %v", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(logs.String(), tc.log) {
				if time.Now().After(deadline) {
					t.Fatalf("no error logged containing %q; log:\n%s", tc.log, logs.String())
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	// Only the well-formed batch in "kinds mixed" got through; the transport still serves.
	if got := recv(t, s.batches); got.DeploymentId != 1 {
		t.Fatalf("got %+v", got)
	}
	expectNothing(t, s.batches, 20*time.Millisecond)
	if len(s.chunks) != 0 {
		t.Fatal("a chunk got through")
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(goodFrame(kindBatch, good)); err != nil {
		t.Fatal(err)
	}
	recv(t, s.batches)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestSenderRefusesOversizedFrame(t *testing.T) {
	s := newSink()
	a, _ := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", newSink())
	_, addrB := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", s)
	c, err := a.GetConnection(context.Background(), addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMessageBatch(testBatch(1, make([]byte, MaxFrameSize))); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("oversized send: %v", err)
	}
	// The connection is still usable.
	if err := c.SendMessageBatch(testBatch(2, nil)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, s.batches); got.Requests[0].LogIndex != 2 {
		t.Fatalf("got %+v", got)
	}
}

func TestRejectedChunkClosesConnection(t *testing.T) {
	s := newSink()
	s.accept = func(c pb.Chunk) bool { return c.ChunkId == 0 }
	a, _ := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", newSink())
	_, addrB := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", s)
	sc, err := a.GetSnapshotConnection(context.Background(), addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.SendChunk(pb.Chunk{ChunkId: 0, ChunkCount: 100}); err != nil {
		t.Fatal(err)
	}
	recv(t, s.chunks)
	// Chunk 1 is rejected and the receiver hangs up; the sender notices within a few writes.
	deadline := time.Now().Add(10 * time.Second)
	for id := uint64(1); ; id++ {
		if err := sc.SendChunk(pb.Chunk{ChunkId: id, ChunkCount: 100, Data: make([]byte, 64<<10)}); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sends kept succeeding after the receiver rejected a chunk")
		}
		time.Sleep(time.Millisecond)
	}
	if len(s.chunks) != 0 {
		t.Fatalf("%d chunks delivered after the rejection", len(s.chunks))
	}
}

func TestReconnectAfterPeerRestart(t *testing.T) {
	addrB := freeAddr(t)
	a, _ := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", newSink())
	s1 := newSink()
	b1, _ := startTransport(t, RaftTransportFactory{}, addrB, s1)
	ctx := context.Background()
	c, err := a.GetConnection(ctx, addrB)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMessageBatch(testBatch(1, nil)); err != nil {
		t.Fatal(err)
	}
	recv(t, s1.batches)

	b1.Close() // the peer goes away
	if _, err := a.GetConnection(ctx, addrB); err == nil {
		t.Fatal("dial to a stopped peer succeeded")
	}
	s2 := newSink()
	startTransport(t, RaftTransportFactory{}, addrB, s2) // and comes back on the same address

	// The old connection fails within a few sends (the first may land in the socket buffer).
	deadline := time.Now().Add(10 * time.Second)
	for c.SendMessageBatch(testBatch(2, nil)) == nil {
		if time.Now().After(deadline) {
			t.Fatal("old connection still accepts sends")
		}
		time.Sleep(time.Millisecond)
	}
	c.Close()
	c, err = a.GetConnection(ctx, addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMessageBatch(testBatch(3, nil)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, s2.batches); got.Requests[0].LogIndex != 3 {
		t.Fatalf("after restart got index %d", got.Requests[0].LogIndex)
	}
}

func TestDeadPeerCannotBlockSender(t *testing.T) {
	// A peer that accepts and never reads.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			held <- c
		}
	}()
	a, _ := startTransport(t, RaftTransportFactory{WriteTimeout: 100 * time.Millisecond}, "127.0.0.1:0", newSink())
	sc, err := a.GetSnapshotConnection(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	defer func() { (<-held).Close() }()
	start := time.Now()
	var sendErr error
	for i := 0; sendErr == nil && time.Since(start) < 20*time.Second; i++ {
		sendErr = sc.SendChunk(pb.Chunk{ChunkId: uint64(i), Data: make([]byte, 1<<20)})
	}
	if !isTimeout(sendErr) {
		t.Fatalf("send to a stalled peer: %v, want a timeout", sendErr)
	}
	t.Logf("stalled peer detected after %v", time.Since(start))
}

func TestContextEndsConnection(t *testing.T) {
	a, _ := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", newSink())
	_, addrB := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", newSink())
	ctx, cancel := context.WithCancel(context.Background())
	c, err := a.GetConnection(ctx, addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for c.SendMessageBatch(testBatch(1, nil)) == nil {
		if time.Now().After(deadline) {
			t.Fatal("connection outlived its context")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := a.GetConnection(ctx, addrB); !errors.Is(err, context.Canceled) {
		t.Fatalf("dial with a cancelled context: %v", err)
	}
}

// TestCloseWithTrafficInFlight closes both transports while senders are busy; goleak in
// TestMain checks that nothing is left behind.
func TestCloseWithTrafficInFlight(t *testing.T) {
	a, _ := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", newSink())
	sb := &sink{batches: make(chan pb.MessageBatch), chunks: make(chan pb.Chunk)} // unbuffered: the reader blocks
	b, addrB := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", sb)
	var wg sync.WaitGroup
	for range 4 {
		c, err := a.GetConnection(context.Background(), addrB)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close()
			for i := 0; c.SendMessageBatch(testBatch(i, make([]byte, 1024))) == nil; i++ {
			}
		})
	}
	<-sb.batches // at least one arrived; the rest pile up
	go func() {
		for range sb.batches {
		}
	}()
	a.Close()
	wg.Wait()
	b.Close()
	close(sb.batches)
}

// TestLoopbackLatency measures one-way delivery of a small batch: SendMessageBatch to the
// receiver's handler, over loopback.
func TestLoopbackLatency(t *testing.T) {
	s := newSink()
	a, _ := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", newSink())
	_, addrB := startTransport(t, RaftTransportFactory{}, "127.0.0.1:0", s)
	c, err := a.GetConnection(context.Background(), addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 2000
	lat := make([]time.Duration, 0, n)
	b := testBatch(1, make([]byte, 100))
	for range n {
		start := time.Now()
		if err := c.SendMessageBatch(b); err != nil {
			t.Fatal(err)
		}
		recv(t, s.batches)
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("one-way small batch over loopback: p50 %v p99 %v (n=%d)", lat[n/2], lat[n*99/100], n)
}

func BenchmarkSendSmallBatch(b *testing.B) {
	s := newSink()
	a, _ := startTransport(b, RaftTransportFactory{}, "127.0.0.1:0", newSink())
	_, addrB := startTransport(b, RaftTransportFactory{}, "127.0.0.1:0", s)
	c, err := a.GetConnection(context.Background(), addrB)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	batch := testBatch(1, make([]byte, 100))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.SendMessageBatch(batch); err != nil {
			b.Fatal(err)
		}
		<-s.batches
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago. Prefer
// rafttest.PreListen: another process may take the port in between.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
