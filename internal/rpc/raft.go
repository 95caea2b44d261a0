package rpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/bondkv/bondkv/internal/base"
)

// Defaults of RaftTransportFactory.
const (
	DefaultDialTimeout  = 5 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	// frameTimeout bounds how long a frame may take to arrive once its first byte has.
	// Between frames a connection may stay idle indefinitely (TCP keep-alive watches it).
	frameTimeout = 30 * time.Second
	keepAlive    = 10 * time.Second
	bufferSize   = 64 << 10
	// TransportName is what the transport's Name method returns.
	TransportName = "bondkv-tcp"
)

// RaftTransportFactory creates the TCP Raft transport of a NodeHost. Its zero value works:
// plain TCP, default timeouts, no logging. Set a pointer or a value as
// NodeHostConfig.Expert.TransportFactory; the fields are copied when the transport is created.
type RaftTransportFactory struct {
	// Dial opens a connection to a peer's Raft address. nil = net.Dialer over TCP with
	// keep-alive. The context carries the dial deadline (DialTimeout) and dragonboat's
	// cancellation.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Listen opens the listener on the NodeHost's listen address. nil = net.Listen("tcp", addr).
	Listen func(addr string) (net.Listener, error)
	// Logger receives connection errors. nil = discard.
	Logger *slog.Logger
	// DialTimeout bounds one dial. 0 = DefaultDialTimeout.
	DialTimeout time.Duration
	// WriteTimeout bounds one send (one message batch or one snapshot chunk, flushed).
	// 0 = DefaultWriteTimeout.
	WriteTimeout time.Duration
}

var _ config.TransportFactory = RaftTransportFactory{}

// Create implements config.TransportFactory. The transport does nothing until dragonboat calls
// Start.
func (f RaftTransportFactory) Create(nhc config.NodeHostConfig, onBatch raftio.MessageHandler,
	onChunk raftio.ChunkHandler) raftio.ITransport {
	if f.Dial == nil {
		d := &net.Dialer{KeepAlive: keepAlive}
		f.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	if f.Listen == nil {
		f.Listen = func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	if f.Logger == nil {
		f.Logger = slog.New(slog.DiscardHandler)
	}
	if f.DialTimeout <= 0 {
		f.DialTimeout = DefaultDialTimeout
	}
	if f.WriteTimeout <= 0 {
		f.WriteTimeout = DefaultWriteTimeout
	}
	return &raftTransport{
		f:       f,
		addr:    nhc.GetListenAddress(),
		log:     f.Logger.With("component", "raft-transport", "addr", nhc.RaftAddress),
		onBatch: onBatch,
		onChunk: onChunk,
		conns:   make(map[net.Conn]func()),
		done:    make(chan struct{}),
	}
}

// Validate implements config.TransportFactory: addr must be host:port with a non-empty host
// and a port in 1..65535.
func (RaftTransportFactory) Validate(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	return err == nil && p > 0
}

// raftTransport implements raftio.ITransport.
type raftTransport struct {
	f       RaftTransportFactory
	addr    string
	log     *slog.Logger
	onBatch raftio.MessageHandler
	onChunk raftio.ChunkHandler
	done    chan struct{} // closed by Close

	mu     sync.Mutex
	closed bool
	ln     net.Listener
	conns  map[net.Conn]func() // every open inbound and outbound connection, and how to close it
	wg     sync.WaitGroup      // accept loop and inbound readers
}

func (t *raftTransport) Name() string { return TransportName }

// Start listens on the NodeHost's listen address and serves inbound connections.
func (t *raftTransport) Start() error {
	ln, err := t.f.Listen(t.addr)
	if err != nil {
		return fmt.Errorf("rpc: raft transport: listen on %s: %w", t.addr, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		ln.Close()
		return fmt.Errorf("rpc: raft transport: start: %w", base.ErrClosed)
	}
	if t.ln != nil {
		ln.Close()
		return errors.New("rpc: raft transport: already started")
	}
	t.ln = ln
	t.wg.Add(1)
	go t.acceptLoop(ln)
	return nil
}

// Close stops the listener and every connection, and waits for the transport's goroutines.
func (t *raftTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	if t.ln != nil {
		t.ln.Close()
	}
	closers := make([]func(), 0, len(t.conns))
	for _, close := range t.conns {
		closers = append(closers, close)
	}
	t.mu.Unlock()
	for _, close := range closers {
		close()
	}
	t.wg.Wait()
	return nil
}

// track registers an open connection and how Close should close it; it fails once the
// transport is closed. With reader set it also counts the goroutine that will serve the
// connection, under the same lock, so that Close never waits on a WaitGroup that is still
// growing.
func (t *raftTransport) track(c net.Conn, close func(), reader bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = close
	if reader {
		t.wg.Add(1)
	}
	return true
}

func (t *raftTransport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.Close()
}

func (t *raftTransport) acceptLoop(ln net.Listener) {
	defer t.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				t.log.Error("raft listener closed unexpectedly", "err", err)
				return
			}
			// Out of file descriptors and the like: back off and keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t.log.Error("raft accept failed", "err", err, "retry_in", backoff)
			select {
			case <-t.done:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		if !t.track(c, func() { c.Close() }, true) {
			c.Close()
			return
		}
		go t.serve(c)
	}
}

// serve reads frames from one inbound connection until it ends or a frame is bad.
func (t *raftTransport) serve(c net.Conn) {
	defer t.wg.Done()
	defer t.untrack(c)
	fr := frameReader{r: bufio.NewReaderSize(c, bufferSize)}
	var first frameKind
	for {
		kind, payload, err := fr.next(func() { c.SetReadDeadline(time.Now().Add(frameTimeout)) })
		if err == nil && first != 0 && kind != first {
			err = fmt.Errorf("%v on a %v connection: %w", kind, first, base.ErrCorruption)
		}
		if err != nil {
			t.connError(c, err)
			return
		}
		c.SetReadDeadline(time.Time{})
		first = kind
		switch kind {
		case kindBatch:
			b, err := decodeBatch(payload)
			if err != nil {
				t.connError(c, err)
				return
			}
			t.onBatch(b)
		case kindChunk:
			ch, err := decodeChunk(payload)
			if err != nil {
				t.connError(c, err)
				return
			}
			if !t.onChunk(ch) {
				t.log.Warn("snapshot chunk rejected, closing connection", "remote", c.RemoteAddr(),
					"shard", ch.ShardID, "replica", ch.ReplicaID, "chunk", ch.ChunkId)
				return
			}
		}
	}
}

// connError logs why an inbound connection ends, unless it ended normally: the peer closed it
// or the transport is shutting down.
func (t *raftTransport) connError(c net.Conn, err error) {
	select {
	case <-t.done:
		return
	default:
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		t.log.Debug("raft connection closed by peer", "remote", c.RemoteAddr())
		return
	}
	t.log.Error("raft connection closed on bad input", "remote", c.RemoteAddr(), "err", err)
}

// dial opens an outbound connection. It ends when ctx ends, when the transport closes, or
// when the caller closes it.
func (t *raftTransport) dial(ctx context.Context, target string) (*sender, error) {
	select {
	case <-t.done:
		return nil, fmt.Errorf("rpc: dial %s: %w", target, base.ErrClosed)
	default:
	}
	dctx, cancel := context.WithTimeout(ctx, t.f.DialTimeout)
	c, err := t.f.Dial(dctx, target)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", target, err)
	}
	s := &sender{t: t, c: c, w: bufio.NewWriterSize(c, bufferSize)}
	if !t.track(c, s.close, false) {
		c.Close()
		return nil, fmt.Errorf("rpc: dial %s: %w", target, base.ErrClosed)
	}
	stop := context.AfterFunc(ctx, s.close)
	s.stop.Store(&stop)
	return s, nil
}

// GetConnection dials target for message batches.
func (t *raftTransport) GetConnection(ctx context.Context, target string) (raftio.IConnection, error) {
	s, err := t.dial(ctx, target)
	if err != nil {
		return nil, err
	}
	return batchConn{s}, nil
}

// GetSnapshotConnection dials target for the chunks of one snapshot.
func (t *raftTransport) GetSnapshotConnection(ctx context.Context, target string) (raftio.ISnapshotConnection, error) {
	s, err := t.dial(ctx, target)
	if err != nil {
		return nil, err
	}
	return chunkConn{s}, nil
}

// sender writes frames to one outbound connection. Sends are serialised; the first write
// error is sticky and closes the connection.
type sender struct {
	t    *raftTransport
	c    net.Conn
	stop atomic.Pointer[func() bool] // detaches the context watcher; set once after dialing

	mu  sync.Mutex
	w   *bufio.Writer
	hdr [frameHeaderSize]byte
	buf []byte
	err error
}

// message is what raftpb values offer for encoding.
type message interface {
	Size() int
	MarshalTo([]byte) (int, error)
}

func (s *sender) send(kind frameKind, m message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	n := m.Size()
	if n > MaxFrameSize {
		// The connection is still intact: refuse this one frame only.
		return fmt.Errorf("%w: %v of %d bytes, limit %d", errFrameTooLarge, kind, n, MaxFrameSize)
	}
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	payload := s.buf[:n]
	if n > keepBuffer {
		s.buf = nil
	}
	if _, err := m.MarshalTo(payload); err != nil {
		return fmt.Errorf("rpc: encode %v: %w", kind, err)
	}
	putFrameHeader(s.hdr[:], kind, payload)
	err := s.c.SetWriteDeadline(time.Now().Add(s.t.f.WriteTimeout))
	if err == nil {
		_, err = s.w.Write(s.hdr[:])
	}
	if err == nil {
		_, err = s.w.Write(payload)
	}
	if err == nil {
		err = s.w.Flush()
	}
	if err != nil {
		s.err = fmt.Errorf("rpc: send %v to %s: %w", kind, s.c.RemoteAddr(), err)
		s.release()
		return s.err
	}
	return nil
}

// close closes the connection; later sends fail. Safe to call more than once and
// concurrently with send.
func (s *sender) close() {
	s.release()
	s.mu.Lock()
	if s.err == nil {
		s.err = fmt.Errorf("rpc: connection to %s: %w", s.c.RemoteAddr(), base.ErrClosed)
	}
	s.mu.Unlock()
}

// release closes the connection and detaches it from its context and transport. It does not
// take s.mu, so it can unblock a send in progress.
func (s *sender) release() {
	if stop := s.stop.Load(); stop != nil {
		(*stop)()
	}
	s.t.untrack(s.c)
}

// batchConn implements raftio.IConnection.
type batchConn struct{ s *sender }

func (c batchConn) SendMessageBatch(b pb.MessageBatch) error { return c.s.send(kindBatch, &b) }
func (c batchConn) Close()                                   { c.s.close() }

// chunkConn implements raftio.ISnapshotConnection.
type chunkConn struct{ s *sender }

func (c chunkConn) SendChunk(ch pb.Chunk) error { return c.s.send(kindChunk, &ch) }
func (c chunkConn) Close()                      { c.s.close() }
