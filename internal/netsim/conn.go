package netsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/bondkv/bondkv/internal/base"
)

// ErrPartitioned is matched (errors.Is) by every *PartitionError.
var ErrPartitioned = errors.New("netsim: partitioned")

// PartitionError is returned while the link between From and To is cut: by a dial, by the
// Read and Write of a conn the cut broke, and by a Raft snapshot stream. It is a net.Error
// whose Temporary reports true: the link may be healed.
type PartitionError struct {
	From, To base.NodeID
}

func (e *PartitionError) Error() string {
	return fmt.Sprintf("netsim: link between %v and %v is partitioned", e.From, e.To)
}

func (e *PartitionError) Is(target error) bool { return target == ErrPartitioned }
func (e *PartitionError) Timeout() bool        { return false }
func (e *PartitionError) Temporary() bool      { return true }

var _ net.Error = (*PartitionError)(nil)

const (
	// connQueueBytes is how much a conn reads ahead of its user before it stops reading the
	// socket, which pushes back on the sender as a full receive window would.
	connQueueBytes = 4 << 20
	segmentSize    = 32 << 10
)

// Dialer returns a dial function for node from: it fails with a *PartitionError while the link
// to the address's owner is cut (either direction), and otherwise returns a TCP conn shaped
// by the links between the two nodes.
func (n *Network) Dialer(from base.NodeID) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		to := n.owner(addr)
		if n.isCut(from, to) {
			return nil, &PartitionError{From: from, To: to}
		}
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c := newConn(n, raw, from, true)
		if err := c.attach(to); err != nil {
			c.Close()
			return nil, err
		}
		go c.readLoop()
		return c, nil
	}
}

// Listener wraps ln, a listener of node, so that accepted conns are shaped by the links
// between node and the dialing node. It registers ln's address as node's.
func (n *Network) Listener(node base.NodeID, ln net.Listener) net.Listener {
	n.Register(node, ln.Addr().String())
	return &listener{Listener: ln, n: n, node: node}
}

type listener struct {
	net.Listener
	n    *Network
	node base.NodeID
}

func (l *listener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := newConn(l.n, raw, l.node, false)
	go c.readLoop()
	return c, nil
}

// conn is a shaped stream. A goroutine reads the socket ahead and queues each segment until
// the peer→self link says it has arrived; Read takes segments from that queue. Writes go
// straight to the socket: the peer's conn shapes them.
type conn struct {
	net.Conn // the socket; its LocalAddr, RemoteAddr and SetWriteDeadline are used as they are
	n        *Network
	self     base.NodeID
	dialed   bool // made by Dialer: its local address is registered
	q        *delayQueue[[]byte]
	rd       *deadline
	done     chan struct{} // closed by Close or fail

	readMu  sync.Mutex
	pending []byte // rest of a segment a short Read left

	mu      sync.Mutex
	peer    base.NodeID
	known   bool  // peer is known (and the conn is tracked by the network)
	err     error // why the conn ended: net.ErrClosed, a *PartitionError
	readErr error // how the socket read ended (io.EOF, ...), once the queue drains
}

func newConn(n *Network, raw net.Conn, self base.NodeID, dialed bool) *conn {
	return &conn{Conn: raw, n: n, self: self, dialed: dialed,
		q: newDelayQueue[[]byte](connQueueBytes), rd: newDeadline(), done: make(chan struct{})}
}

// attach records the peer and starts tracking the conn so a partition can fail it. The
// dialing side also registers its local address, which is how the accepting side learns the
// peer: no byte can reach it before that registration.
func (c *conn) attach(peer base.NodeID) error {
	n := c.n
	n.mu.Lock()
	c.mu.Lock()
	c.peer, c.known = peer, true
	closed := c.err != nil
	c.mu.Unlock()
	cut := n.cutLocked(c.self, peer)
	if !closed && !cut {
		if c.dialed {
			n.dialers[c.LocalAddr().String()] = c.self
		}
		p := pair{peer, c.self}
		if n.conns[p] == nil {
			n.conns[p] = make(map[*conn]struct{})
		}
		n.conns[p][c] = struct{}{}
	}
	n.mu.Unlock()
	if cut {
		return c.fail(c.partitionError())
	}
	return nil
}

// readLoop reads the socket and queues each segment on the peer→self link.
func (c *conn) readLoop() {
	defer c.q.close()
	buf := make([]byte, segmentSize)
	for {
		k, err := c.Conn.Read(buf)
		if k > 0 {
			peer, ok := c.peerID()
			if !ok { // accepted conn: the first bytes name the dialer
				c.n.mu.Lock()
				peer = c.n.dialers[c.RemoteAddr().String()]
				c.n.mu.Unlock()
				if c.attach(peer) != nil {
					return
				}
			}
			at, ok := c.n.schedule(peer, c.self, k)
			if !ok {
				c.fail(c.partitionError())
				return
			}
			if !c.q.push(bytes.Clone(buf[:k]), k, at, c.done) {
				return
			}
		}
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
	}
}

func (c *conn) peerID() (base.NodeID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peer, c.known
}

func (c *conn) partitionError() error {
	peer, _ := c.peerID()
	return &PartitionError{From: c.self, To: peer}
}

// Read returns bytes whose delivery time has come. It honours SetReadDeadline.
func (c *conn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if len(c.pending) == 0 {
		if err := c.failure(); err != nil {
			return 0, err
		}
		it, err := c.q.pop(c.done, c.rd.wait())
		switch {
		case errors.Is(err, errDrained):
			c.mu.Lock()
			err = c.readErr
			c.mu.Unlock()
			if ferr := c.failure(); ferr != nil {
				err = ferr
			}
			if err == nil {
				err = io.EOF
			}
			return 0, err
		case errors.Is(err, errAborted):
			return 0, c.failure()
		case err != nil:
			return 0, err
		}
		peer, _ := c.peerID()
		if !c.n.deliver(peer, c.self, it.size) {
			return 0, c.fail(c.partitionError())
		}
		c.pending = it.v
	}
	k := copy(p, c.pending)
	c.pending = c.pending[k:]
	return k, nil
}

// Write sends p to the peer (its conn delays it).
func (c *conn) Write(p []byte) (int, error) {
	if err := c.failure(); err != nil {
		return 0, err
	}
	k, err := c.Conn.Write(p)
	if err != nil {
		if ferr := c.failure(); ferr != nil {
			err = ferr
		}
	}
	return k, err
}

func (c *conn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *conn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.rd.set(t)
	return nil
}

// Close closes the socket; Read and Write then return net.ErrClosed.
func (c *conn) Close() error {
	c.fail(net.ErrClosed)
	return nil
}

// fail ends the conn with err unless it already ended, closes the socket, and returns the
// error the conn ended with.
func (c *conn) fail(err error) error {
	c.mu.Lock()
	if c.err != nil {
		err = c.err
		c.mu.Unlock()
		return err
	}
	c.err = err
	peer, known := c.peer, c.known
	close(c.done)
	c.mu.Unlock()

	c.n.mu.Lock()
	if known {
		delete(c.n.conns[pair{peer, c.self}], c)
	}
	if c.dialed {
		delete(c.n.dialers, c.LocalAddr().String())
	}
	c.n.mu.Unlock()
	c.Conn.Close()
	return err
}

// deadline is a resettable read deadline: wait returns a channel that is closed once the
// deadline passes. A Read already waiting on that channel sees later changes of the deadline,
// as net.Conn requires.
type deadline struct {
	mu    sync.Mutex
	gen   uint64 // invalidates the callback of a timer that fired while being replaced
	timer *time.Timer
	ch    chan struct{}
}

func newDeadline() *deadline { return &deadline{ch: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if isClosed(d.ch) {
		d.ch = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.ch)
		return
	}
	gen, ch := d.gen, d.ch
	d.timer = time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen {
			close(ch)
		}
	})
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
