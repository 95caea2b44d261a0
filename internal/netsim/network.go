package netsim

import (
	"sync"
	"time"

	"github.com/bondkv/bondkv/internal/base"
)

// Link is the shape of one direction between two nodes.
type Link struct {
	// Latency is added to every message or segment after its transmission. Negative = 0.
	Latency time.Duration
	// Bandwidth is in bytes per second; 0 (or negative) = unlimited.
	Bandwidth int64
}

// LinkStats counts what a link delivered and dropped. Raft message batches and snapshot chunks
// count one each; a stream counts each segment it read from the socket.
type LinkStats struct {
	Delivered, DeliveredBytes int64
	Dropped, DroppedBytes     int64
}

// Network is a set of simulated links. Its zero value is not usable; call New. All methods
// are safe for concurrent use and take effect immediately.
type Network struct {
	mu      sync.Mutex
	def     Link
	lanes   map[pair]*lane
	owners  map[string]base.NodeID // listen addresses
	dialers map[string]base.NodeID // local addresses of conns made by Dialer
	nodes   map[base.NodeID]struct{}
	conns   map[pair]map[*conn]struct{} // stream conns, under the direction they receive
}

// pair is an ordered pair of nodes: one direction of a link.
type pair struct{ from, to base.NodeID }

// lane is the state of one direction.
type lane struct {
	link      *Link     // nil: the default link
	cut       bool      // partitioned
	busyUntil time.Time // end of the latest transmission
	lastAt    time.Time // latest delivery time handed out
	stats     LinkStats
}

// New returns a network where every link is the zero Link and nothing is cut.
func New() *Network {
	return &Network{
		lanes:   make(map[pair]*lane),
		owners:  make(map[string]base.NodeID),
		dialers: make(map[string]base.NodeID),
		nodes:   make(map[base.NodeID]struct{}),
		conns:   make(map[pair]map[*conn]struct{}),
	}
}

// Register records that node listens on addrs (its Raft address, its gRPC address, ...), as
// peers dial them. TransportFactory and Listener register their own addresses; call Register
// for any other spelling of an address. An address registered again moves to the new node.
func (n *Network) Register(node base.NodeID, addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nodes[node] = struct{}{}
	for _, a := range addrs {
		n.owners[a] = node
	}
}

// SetLink sets the link from → to (one direction).
func (n *Network) SetLink(from, to base.NodeID, l Link) {
	l = clean(l)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lane(pair{from, to}).link = &l
}

// SetDefaultLink sets the link of every direction that has no SetLink of its own.
func (n *Network) SetDefaultLink(l Link) {
	l = clean(l)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.def = l
}

func clean(l Link) Link {
	return Link{Latency: max(l.Latency, 0), Bandwidth: max(l.Bandwidth, 0)}
}

// Partition cuts the link from → to. The other direction is untouched.
func (n *Network) Partition(from, to base.NodeID) {
	n.cut(true, pair{from, to})
}

// PartitionBoth cuts both directions between a and b.
func (n *Network) PartitionBoth(a, b base.NodeID) {
	n.cut(true, pair{a, b}, pair{b, a})
}

// Isolate cuts both directions between node and every other registered node, and node 0
// (unregistered peers). Nodes registered later are not cut. Heal or HealAll undo it.
func (n *Network) Isolate(node base.NodeID) {
	n.mu.Lock()
	ps := []pair{{node, 0}, {0, node}}
	for m := range n.nodes {
		if m != node && m != 0 {
			ps = append(ps, pair{node, m}, pair{m, node})
		}
	}
	n.mu.Unlock()
	n.cut(true, ps...)
}

// Heal restores the link from → to.
func (n *Network) Heal(from, to base.NodeID) {
	n.cut(false, pair{from, to})
}

// HealAll restores every link.
func (n *Network) HealAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.lanes {
		l.cut = false
	}
}

// Stats returns what the link from → to delivered and dropped so far.
func (n *Network) Stats(from, to base.NodeID) LinkStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l, ok := n.lanes[pair{from, to}]; ok {
		return l.stats
	}
	return LinkStats{}
}

// cut sets or clears the partition of directions ps. Cutting also fails the stream conns
// between each pair, outside the lock.
func (n *Network) cut(on bool, ps ...pair) {
	var broken []*conn
	n.mu.Lock()
	for _, p := range ps {
		n.lane(p).cut = on
		if on {
			for c := range n.conns[p] {
				broken = append(broken, c)
			}
			for c := range n.conns[pair{p.to, p.from}] {
				broken = append(broken, c)
			}
		}
	}
	n.mu.Unlock()
	for _, c := range broken {
		c.fail(c.partitionError())
	}
}

// lane returns the state of direction p, creating it. n.mu must be held.
func (n *Network) lane(p pair) *lane {
	l, ok := n.lanes[p]
	if !ok {
		l = &lane{}
		n.lanes[p] = l
	}
	return l
}

// schedule is the link model: it returns when a message of size bytes sent now from → to is
// delivered, or false if the link is cut (the message is counted as dropped). Both the Raft
// and the stream paths use it.
func (n *Network) schedule(from, to base.NodeID, size int) (time.Time, bool) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.lane(pair{from, to})
	if l.cut {
		l.drop(size)
		return time.Time{}, false
	}
	link := n.def
	if l.link != nil {
		link = *l.link
	}
	end := now
	if l.busyUntil.After(end) {
		end = l.busyUntil
	}
	if link.Bandwidth > 0 {
		end = end.Add(time.Duration(int64(size) * int64(time.Second) / link.Bandwidth))
	}
	l.busyUntil = end
	at := end.Add(link.Latency)
	if at.Before(l.lastAt) {
		at = l.lastAt
	}
	l.lastAt = at
	return at, true
}

// drop counts a message lost on the lane (n.mu held).
func (l *lane) drop(size int) {
	l.stats.Dropped++
	l.stats.DroppedBytes += int64(size)
}

// deliver is called when a scheduled message is due. It reports false, counting the message as
// dropped, if the link was cut while the message was in flight.
func (n *Network) deliver(from, to base.NodeID, size int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.lane(pair{from, to})
	if l.cut {
		l.drop(size)
		return false
	}
	l.stats.Delivered++
	l.stats.DeliveredBytes += int64(size)
	return true
}

// isCut reports whether either direction between a and b is cut.
func (n *Network) isCut(a, b base.NodeID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cutLocked(a, b)
}

func (n *Network) cutLocked(a, b base.NodeID) bool {
	l1, l2 := n.lanes[pair{a, b}], n.lanes[pair{b, a}]
	return l1 != nil && l1.cut || l2 != nil && l2.cut
}

// owner returns the node that listens on addr, or 0.
func (n *Network) owner(addr string) base.NodeID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.owners[addr]
}
