package netsim

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/bondkv/bondkv/internal/base"
)

// raftQueueBytes is how much a Raft connection buffers before SendMessageBatch blocks.
const raftQueueBytes = 64 << 20

// TransportFactory wraps inner, the transport factory of node, so that what node sends is
// shaped by its links. The created transport registers node's RaftAddress.
func (n *Network) TransportFactory(node base.NodeID, inner config.TransportFactory) config.TransportFactory {
	return &raftFactory{n: n, node: node, inner: inner}
}

type raftFactory struct {
	n     *Network
	node  base.NodeID
	inner config.TransportFactory
}

func (f *raftFactory) Create(nhc config.NodeHostConfig, onBatch raftio.MessageHandler,
	onChunk raftio.ChunkHandler) raftio.ITransport {
	f.n.Register(f.node, nhc.RaftAddress)
	return &raftTransport{
		n:     f.n,
		node:  f.node,
		inner: f.inner.Create(nhc, onBatch, onChunk),
		done:  make(chan struct{}),
	}
}

func (f *raftFactory) Validate(addr string) bool { return f.inner.Validate(addr) }

// raftTransport implements raftio.ITransport around an inner transport.
type raftTransport struct {
	n     *Network
	node  base.NodeID
	inner raftio.ITransport
	done  chan struct{} // closed by Close: delivery goroutines stop

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (t *raftTransport) Name() string { return "netsim/" + t.inner.Name() }
func (t *raftTransport) Start() error { return t.inner.Start() }

// Close stops delivery, closes the inner transport and waits for every delivery goroutine.
// What is still in flight is lost.
func (t *raftTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	t.mu.Unlock()
	err := t.inner.Close() // also unblocks a delivery stuck in an inner send
	t.wg.Wait()
	return err
}

func (t *raftTransport) GetConnection(ctx context.Context, target string) (raftio.IConnection, error) {
	to := t.n.owner(target)
	c, err := t.inner.GetConnection(ctx, target)
	if err != nil {
		return nil, err
	}
	l, err := startLink(t, to, c.SendMessageBatch, c.Close, false)
	if err != nil {
		return nil, err
	}
	return batchConn{l}, nil
}

func (t *raftTransport) GetSnapshotConnection(ctx context.Context, target string) (raftio.ISnapshotConnection, error) {
	to := t.n.owner(target)
	c, err := t.inner.GetSnapshotConnection(ctx, target)
	if err != nil {
		return nil, err
	}
	l, err := startLink(t, to, c.SendChunk, c.Close, true)
	if err != nil {
		return nil, err
	}
	return chunkConn{l}, nil
}

// linkConn delays what is sent over one inner connection. A goroutine hands items to the
// inner connection when they are due; the first inner error is sticky and is returned by the
// next send, so dragonboat reconnects as it would over a real broken connection.
type linkConn[T any] struct {
	t      *raftTransport
	to     base.NodeID
	send   func(T) error
	close  func()
	stream bool // a loss fails the connection (snapshot chunks) instead of being silent
	q      *delayQueue[T]

	mu  sync.Mutex
	err error
}

func startLink[T any](t *raftTransport, to base.NodeID, send func(T) error, closeInner func(),
	stream bool) (*linkConn[T], error) {
	l := &linkConn[T]{t: t, to: to, send: send, close: closeInner, stream: stream,
		q: newDelayQueue[T](raftQueueBytes)}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		closeInner()
		return nil, fmt.Errorf("netsim: transport of %v: %w", t.node, base.ErrClosed)
	}
	t.wg.Add(1)
	go l.run()
	return l, nil
}

// enqueue schedules v (size bytes) on the link. A message sent over a cut link is dropped:
// silently for batches, failing the connection for a stream.
func (l *linkConn[T]) enqueue(v T, size int) error {
	if err := l.failed(); err != nil {
		return err
	}
	at, ok := l.t.n.schedule(l.t.node, l.to, size)
	if !ok {
		if l.stream {
			return l.fail(&PartitionError{From: l.t.node, To: l.to})
		}
		return nil
	}
	if !l.q.push(v, size, at, l.t.done) {
		if err := l.failed(); err != nil {
			return err
		}
		return fmt.Errorf("netsim: connection %v->%v: %w", l.t.node, l.to, base.ErrClosed)
	}
	return nil
}

func (l *linkConn[T]) run() {
	defer l.t.wg.Done()
	defer l.close()
	defer l.q.close() // unblocks a sender waiting for room once this goroutine stops
	for {
		it, err := l.q.pop(l.t.done, nil)
		if err != nil {
			return // drained after Close, or the transport is closing
		}
		if !l.t.n.deliver(l.t.node, l.to, it.size) {
			if l.stream {
				l.fail(&PartitionError{From: l.t.node, To: l.to})
				return
			}
			continue
		}
		if err := l.send(it.v); err != nil {
			l.fail(err)
			return
		}
	}
}

func (l *linkConn[T]) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
	}
	return l.err
}

func (l *linkConn[T]) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// batchConn implements raftio.IConnection.
type batchConn struct{ l *linkConn[pb.MessageBatch] }

// SendMessageBatch copies what dragonboat may reuse once the call returns (the request slice
// and the entry slices) and schedules the batch.
func (c batchConn) SendMessageBatch(b pb.MessageBatch) error {
	reqs := slices.Clone(b.Requests)
	for i := range reqs {
		reqs[i].Entries = slices.Clone(reqs[i].Entries)
	}
	b.Requests = reqs
	return c.l.enqueue(b, b.Size())
}

// Close lets what is queued drain to the inner connection, then closes it. It does not wait.
func (c batchConn) Close() { c.l.q.close() }

// chunkConn implements raftio.ISnapshotConnection.
type chunkConn struct{ l *linkConn[pb.Chunk] }

// SendChunk copies the chunk's data (dragonboat reuses the buffer) and schedules it.
func (c chunkConn) SendChunk(ch pb.Chunk) error {
	ch.Data = bytes.Clone(ch.Data)
	return c.l.enqueue(ch, ch.Size())
}

// Close lets the queued chunks drain, so the last chunk of a snapshot is not lost, then closes
// the inner connection. It does not wait.
func (c chunkConn) Close() { c.l.q.close() }
