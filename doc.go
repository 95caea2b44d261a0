// Package bondkv is an embedded, replicated, transactional key-value store for Go services
// whose state belongs to actors.
//
// A program embeds a node with Open; a nil *Options runs a single-node cluster in a directory,
// and Options.Peers / Options.Join form or join a cluster of several. Data lives in ranges, each
// its own Raft group (dragonboat v4) over the node's Pebble engine (DESIGN.md §3–4).
//
// Layering (DESIGN.md §1): the root package is the public API — Open, DB, Options, errors — over
// raftgroup (Raft hosting) and store (the engine); actorstate and bench build on it.
//
// Guarantees of the single-key API:
//   - Put and Delete return once the write is committed by a quorum of replicas and applied; an
//     acknowledged write survives a minority of node failures and a crash of every node.
//   - Get and Scan are linearizable (a ReadIndex round with the leader before reading locally).
//   - Bad input (empty or oversized key, oversized value, inverted scan bounds) fails with a
//     typed error before anything is proposed. A write whose outcome cannot be known returns an
//     error wrapping ErrAmbiguous.
//   - Close is idempotent; afterwards every call returns ErrClosed.
//
// Until ranges split (shard/), all user data lives in one range, RangeID 3.
package bondkv
