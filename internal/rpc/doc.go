// Package rpc is bondkv's wire: the bytes that travel between nodes.
//
// Layering (DESIGN.md §1): rpc imports nothing from bondkv above internal/ (today only
// internal/base). Handlers that give the wire its meaning are registered by the packages above
// it; rpc itself knows nothing of ranges, shards or transactions. It will also hold the gRPC
// service plumbing; today it holds the Raft transport.
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
