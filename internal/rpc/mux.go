package rpc

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// classifyTimeout bounds how long the Mux waits for the first two bytes of a new connection.
// A connection that sends fewer in that time is closed.
const classifyTimeout = 10 * time.Second

// Mux splits one listener between the Raft transport and the node service: a connection whose
// first two bytes are the Raft frame magic (0xB0 0x4B) goes to Raft, every other connection
// (gRPC opens with the HTTP/2 preface "PRI * HTTP/2.0") goes to Service. The bytes read to
// decide are replayed to whoever reads the connection.
type Mux struct {
	ln      net.Listener
	log     *slog.Logger
	timeout time.Duration
	raft    *muxListener
	service *muxListener
	done    chan struct{} // closed by Close or when ln fails

	mu      sync.Mutex
	closed  bool
	err     error                 // why done was closed; written before done is closed
	pending map[net.Conn]struct{} // accepted, not yet handed over
	wg      sync.WaitGroup        // accept loop and classifiers
}

// NewMux starts accepting on ln and classifying its connections. logger nil = discard. The Mux
// owns ln: Close closes it.
func NewMux(ln net.Listener, logger *slog.Logger) *Mux {
	return newMux(ln, logger, classifyTimeout)
}

func newMux(ln net.Listener, logger *slog.Logger, timeout time.Duration) *Mux {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Mux{
		ln:      ln,
		log:     logger.With("component", "rpc-mux", "addr", ln.Addr().String()),
		timeout: timeout,
		done:    make(chan struct{}),
		pending: make(map[net.Conn]struct{}),
	}
	m.raft = newMuxListener(m)
	m.service = newMuxListener(m)
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

// Raft returns the listener of the connections that start with the Raft frame magic. Closing
// it stops their hand-over (later ones are closed) and leaves Service alone.
func (m *Mux) Raft() net.Listener { return m.raft }

// Service returns the listener of every other connection. Closing it leaves Raft alone.
func (m *Mux) Service() net.Listener { return m.service }

// Addr is the address of the underlying listener.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Close closes the underlying listener, both virtual listeners and every connection that has
// not been handed over yet, and waits for the Mux's goroutines. Connections already accepted
// from Raft or Service belong to their acceptor and stay open. Close is idempotent.
func (m *Mux) Close() error {
	m.mu.Lock()
	var err error
	if !m.closed {
		m.closed = true
		// Mark the mux stopped before closing ln, so the accept loop knows the close is ours.
		m.stopLocked(net.ErrClosed)
		err = m.ln.Close()
		for c := range m.pending {
			c.Close()
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil // ln failed on its own earlier; the accept loop logged it
	}
	return err
}

// stopLocked ends both virtual listeners with err. m.mu is held.
func (m *Mux) stopLocked(err error) {
	if m.err == nil {
		m.err = err
		close(m.done)
	}
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				m.log.Error("listener closed unexpectedly", "err", err)
				m.mu.Lock()
				m.stopLocked(err)
				m.mu.Unlock()
				return
			}
			// Out of file descriptors and the like: back off and keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.log.Error("accept failed", "err", err, "retry_in", backoff)
			select {
			case <-m.done:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			c.Close()
			return
		}
		m.pending[c] = struct{}{}
		m.wg.Add(1)
		m.mu.Unlock()
		go m.classify(c)
	}
}

// classify reads the first two bytes of c and hands it to the listener they select.
func (m *Mux) classify(c net.Conn) {
	defer m.wg.Done()
	handed := false
	defer func() {
		m.mu.Lock()
		delete(m.pending, c)
		m.mu.Unlock()
		if !handed {
			c.Close()
		}
	}()
	var prefix [2]byte
	err := c.SetReadDeadline(time.Now().Add(m.timeout))
	if err == nil {
		_, err = io.ReadFull(c, prefix[:])
	}
	if err == nil {
		err = c.SetReadDeadline(time.Time{})
	}
	if err != nil {
		m.log.Debug("connection closed before it could be classified", "remote", c.RemoteAddr(), "err", err)
		return
	}
	to := m.service
	if prefix == frameMagic {
		to = m.raft
	}
	handed = to.handOver(&prefixConn{Conn: c, prefix: prefix[:]})
}

// muxListener is one of the Mux's virtual listeners.
type muxListener struct {
	m     *Mux
	conns chan net.Conn
	once  sync.Once
	done  chan struct{} // closed by Close
}

func newMuxListener(m *Mux) *muxListener {
	return &muxListener{m: m, conns: make(chan net.Conn), done: make(chan struct{})}
}

// handOver waits until c is accepted, or the listener or the Mux closes. It reports whether c
// was accepted.
func (l *muxListener) handOver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
	case <-l.m.done:
	}
	return false
}

// Accept waits for the next connection of this kind. After Close, or after the Mux closes, it
// returns an error that matches net.ErrClosed (or the error that ended the Mux's listener).
func (l *muxListener) Accept() (net.Conn, error) {
	select { // a closed listener never returns a connection, even one that is waiting
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.m.done:
		return nil, l.m.err // written before done was closed
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.m.done:
		return nil, l.m.err
	}
}

// Close stops this listener only. It is idempotent.
func (l *muxListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *muxListener) Addr() net.Addr { return l.m.Addr() }

// prefixConn replays the bytes the Mux read before handing the connection over.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
