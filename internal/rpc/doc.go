// Package rpc is bondkv's wire: the bytes that travel between nodes.
//
// Layering (DESIGN.md §1): rpc imports nothing from bondkv above internal/ (today only
// internal/base). Handlers that give the wire its meaning are registered by the packages above
// it; rpc itself knows nothing of ranges, shards or transactions. It holds the Raft transport,
// the node service (gRPC) and the Mux that serves both on one address.
//
// # One address per node
//
// A node listens on one address. [NewMux] accepts its connections and sorts them by their first
// two bytes: the Raft frame magic (0xB0 0x4B, below) goes to [Mux.Raft], anything else (gRPC
// opens with the HTTP/2 preface "PRI * HTTP/2.0") to [Mux.Service]; the two bytes are replayed
// to the reader. Each connection is classified in its own goroutine, with a 10 s deadline for
// those two bytes, so a client that connects and stays silent delays nobody else and is closed
// when the deadline passes. A classified connection waits until its listener accepts it.
// The node wires it as:
//
//	mux := rpc.NewMux(ln, logger)
//	nhc.Expert.TransportFactory = rpc.RaftTransportFactory{
//		Listen: func(string) (net.Listener, error) { return mux.Raft(), nil }}
//	go server.Serve(mux.Service())
//
// Closing one virtual listener (the Raft transport closes its listener when the NodeHost
// closes) leaves the other serving; Accept on a closed one returns net.ErrClosed and newly
// classified connections of its kind are closed. [Mux.Close] closes the real listener, both
// virtual listeners and every connection not handed over yet, and waits for the Mux's
// goroutines; connections already accepted belong to their acceptor. Shut a node down as
// Server.Stop, NodeHost.Close, then Mux.Close.
//
// # Node service
//
// The node service is one gRPC service, "bondkv.Node", whose methods carry raw bytes: there is
// no protobuf schema, each [Handler] defines its own encoding. A codec that passes []byte
// through is given to the gRPC server and to every client connection as an option; nothing is
// registered in gRPC's global codec registry. Methods are registered with [Server.Handle]
// before [Server.Serve]. [Client.Call] keeps one gRPC connection per address (dropped by
// [Client.Forget] and [Client.Close]); a call without a deadline gets [DefaultCallTimeout].
// Requests and responses may be up to [MaxMessageSize] (64 MiB) each way.
//
// Errors of [Client.Call] say whether the request may have reached the handler:
//   - [ErrUnavailable]: certainly not. The peer could not be dialed, the connection was known
//     to be broken or in reconnect back-off, or ctx ended before the request was handed to a
//     connection (then the error also wraps ctx's error). Safe to retry anywhere. The client
//     tracks this per call: once gRPC has handed the request's headers to a connection, a
//     failure is no longer reported as ErrUnavailable.
//   - context.DeadlineExceeded or context.Canceled (wrapped): the call ended after the request
//     was sent; the handler may or may not have run. The deadline travels with the call, so
//     the handler's context ends too.
//   - [ErrUnknownMethod]: the peer has no such method.
//   - [*RemoteError]: the handler returned an error; only its message travels. Errors that
//     callers must match are encoded in the response bytes by the handler instead. A handler's
//     error is always sent as a plain remote error, so a gRPC status it got from a call of its
//     own (an Unavailable from a forward, say) can never pass for this call's.
//   - anything else, e.g. a connection that broke after the request was sent: ambiguous.
//
// [Server.Stop] stops accepting, lets running handlers finish for 5 s, then closes the
// connections, cancels the handlers' contexts and returns when every handler has returned
// (a handler that ignores its context therefore delays Stop). Serve then returns nil.
//
// Liveness: clients ping a connection that has been idle for 10 s and drop it when the answer
// takes more than 3 s, so a dead peer is noticed within about 13 s even without traffic (gRPC
// does not allow client pings more often than every 10 s); a call in flight is bounded by its
// deadline. Servers accept pings every 5 s and ping idle clients likewise. A failed dial is
// retried with back-off from 100 ms to 3 s; calls made meanwhile fail fast with
// ErrUnavailable.
//
// There is no TLS yet: connections use gRPC's insecure credentials, and a node trusts whatever
// reaches its address. TLS (and peer authentication) comes later, on the same Mux.
//
// gRPC's own logging goes through grpclog, which is global; rpc does not touch it. Its default
// prints only errors, so tests and nodes stay quiet; set GRPC_GO_LOG_SEVERITY_LEVEL and
// GRPC_GO_LOG_VERBOSITY_LEVEL to see more.
//
// # Raft transport
//
// [RaftTransportFactory] is the dragonboat transport of every node (set it as
// NodeHostConfig.Expert.TransportFactory). It listens on the NodeHost's listen address
// (ListenAddress, or RaftAddress when that is empty) and speaks plain TCP. Connections are
// one-way: the dialing side writes frames, the accepting side reads them and hands them to
// dragonboat. Each connection carries either message batches or snapshot chunks, never both.
//
// A frame is a 12-byte header followed by a protobuf payload (raftpb.MessageBatch or
// raftpb.Chunk):
//
//	offset size field
//	0      2    magic 0xB0 0x4B
//	2      1    version (1)
//	3      1    kind: 1 message batch, 2 snapshot chunk
//	4      4    payload length, big endian, at most MaxFrameSize
//	8      4    CRC-32C (Castagnoli) of the payload, big endian
//
// Guarantees and invariants:
//   - Frames on one connection are delivered to the handler in the order they were sent.
//   - A frame that fails any check (magic, version, kind, length, checksum, decoding, a kind
//     that differs from the connection's first frame) closes that connection and is logged at
//     Error level; it never panics and never reaches dragonboat. The transport keeps serving
//     other connections.
//   - A snapshot chunk the ChunkHandler rejects closes its connection; the sender sees a write
//     error and dragonboat retries the snapshot.
//   - Dialing is bounded by DialTimeout and by the context dragonboat passes; every send is
//     bounded by WriteTimeout, so a peer that stops reading cannot block a sender forever.
//     When that context ends, the connections dialed with it are closed.
//   - Close stops the listener, closes every inbound and outbound connection and returns only
//     after every goroutine the transport started has exited. It is idempotent.
//
// There is no TLS yet and no per-connection handshake: a node trusts whatever reaches its Raft
// port, as dragonboat's own TCP transport does without MutualTLS. dragonboat itself drops
// batches whose DeploymentId does not match.
package rpc
