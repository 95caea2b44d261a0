// Package netsim is the simulated network of tests and benchmarks (DESIGN.md §9): every node
// of a cluster runs in one process on loopback, and netsim gives each ordered pair of nodes a
// link with a latency, a bandwidth and a partition switch.
//
// Layering: netsim imports nothing from bondkv except internal/base. It wraps whatever it is
// given: a dragonboat transport factory ([Network.TransportFactory]) for Raft traffic, and
// net.Conn dialers and listeners ([Network.Dialer], [Network.Listener]) for gRPC and any other
// stream.
//
// # Link model
//
// A link is one-way: SetLink(a, b, ...) shapes what a sends to b, and b→a is a separate link.
// Links without their own setting use the default link (zero: no delay, unlimited bandwidth).
// Every message or stream segment of size s sent at time t over a link is scheduled by one
// function shared by both paths:
//
//	start   = max(t, end of the link's previous transmission)   // serialised like a wire
//	end     = start + s / Bandwidth                             // 0 bandwidth: end = start
//	deliver = max(end + Latency, previous delivery on the link)  // never reordered
//
// Changing a link at run time affects what is sent afterwards. A cut link (Partition,
// Isolate) drops what is sent while it is cut and what falls due while it is cut, as a cut
// cable loses the packets on it. Stats counts, per link, what was delivered and dropped.
//
// # Raft traffic
//
// The wrapped transport shapes on the sending side: SendMessageBatch schedules the batch and
// returns at once (like a socket buffer); a goroutine per connection hands it to the inner
// transport when it is due, without holding any lock. While the link is cut, batches are
// silently dropped: to Raft that is a lost packet, and it retries. Snapshot chunks are a
// stream: a chunk sent over a cut link fails its connection with a *PartitionError and
// dragonboat retries the snapshot later. Every node of a cluster must use a wrapped factory:
// traffic is shaped only by its sender. Connections to unregistered addresses use node 0 as
// their peer, which only the default link and Isolate apply to.
//
// # Streams
//
// A conn from Dialer or Listener shapes what it receives: bytes that arrive from the peer are
// released to Read per the peer→self link. Dialer registers each conn's local address so the
// accepting Listener knows which node dialed it. A stream needs both directions, so a cut in
// either direction between two nodes fails their conns (Read and Write return a
// *PartitionError, which matches ErrPartitioned) and makes new dials fail with one until the
// link is healed. Dials themselves are not delayed.
//
// Closing a wrapped transport stops its goroutines; closing a conn stops its goroutine.
package netsim
