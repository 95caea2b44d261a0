package netsim

import (
	"errors"
	"os"
	"sync"
	"time"
)

var (
	errDrained = errors.New("netsim: queue closed and empty")
	errAborted = errors.New("netsim: aborted")
)

// delayQueue is a FIFO of scheduled items, released one at a time when due. It holds at most
// limit bytes (a single larger item is let in when the queue is empty); push blocks beyond
// that, as a full socket buffer would. One goroutine pushes and one pops.
type delayQueue[T any] struct {
	limit int
	wake  chan struct{} // an item arrived or the queue was closed
	room  chan struct{} // bytes were freed or the queue was closed

	mu     sync.Mutex
	items  []queued[T]
	bytes  int
	closed bool
}

type queued[T any] struct {
	v    T
	size int
	at   time.Time
}

func newDelayQueue[T any](limit int) *delayQueue[T] {
	return &delayQueue[T]{limit: limit, wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push appends v, due at at. It reports false if the queue is closed or abort fires first.
func (q *delayQueue[T]) push(v T, size int, at time.Time, abort <-chan struct{}) bool {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return false
		}
		if q.bytes == 0 || q.bytes+size <= q.limit {
			q.items = append(q.items, queued[T]{v, size, at})
			q.bytes += size
			q.mu.Unlock()
			signal(q.wake)
			return true
		}
		q.mu.Unlock()
		select {
		case <-q.room:
		case <-abort:
			return false
		}
	}
}

// close lets the queue drain: push fails from now on, pop returns what is left and then
// errDrained.
func (q *delayQueue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.wake)
	signal(q.room)
}

// pop waits for the head item to be due and removes it. It returns errDrained once the queue
// is closed and empty, errAborted when abort fires and os.ErrDeadlineExceeded when deadline fires (either
// channel may be nil).
func (q *delayQueue[T]) pop(abort, deadline <-chan struct{}) (queued[T], error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var due <-chan time.Time
		q.mu.Lock()
		if len(q.items) > 0 {
			head := q.items[0]
			wait := time.Until(head.at)
			if wait <= 0 {
				q.items[0] = queued[T]{}
				q.items = q.items[1:]
				q.bytes -= head.size
				q.mu.Unlock()
				signal(q.room)
				return head, nil
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			due = timer.C
		} else if q.closed {
			q.mu.Unlock()
			return queued[T]{}, errDrained
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-due:
		case <-abort:
			return queued[T]{}, errAborted
		case <-deadline:
			return queued[T]{}, os.ErrDeadlineExceeded
		}
	}
}
