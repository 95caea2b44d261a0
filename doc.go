// Package bondkv is an embedded, replicated, transactional key-value store for Go services
// whose state belongs to actors.
//
// A program embeds a node with Open; a nil *Options runs a single-node cluster in a directory,
// Options.Join joins a running cluster through any of its nodes, and Options.Peers forms a
// cluster of several nodes at once. Data lives in ranges, each its own Raft group (dragonboat v4)
// over the node's Pebble engine (DESIGN.md §3–4); ranges split (DB.Split, or by size and load),
// merge when small and idle, and move between nodes under the placement driver (package shard).
// Any node serves any key: a node without a replica of the key's range forwards the request.
//
// Layering (DESIGN.md §1): the root package is the public API — Open, DB, Options, errors — over
// shard (ranges, routing, placement), raftgroup (Raft hosting) and store (the engine);
// actorstate and bench build on it.
//
// Guarantees of the single-key API:
//   - Put and Delete return once the write is committed by a quorum of replicas and applied; an
//     acknowledged write survives a minority of node failures and a crash of every node.
//   - Get and Scan are linearizable (a ReadIndex round with the leader before reading locally).
//   - Bad input (empty or oversized key, oversized value, inverted scan bounds) fails with a
//     typed error before anything is proposed. A write whose outcome cannot be known returns an
//     error wrapping ErrAmbiguous.
//   - Close is idempotent; afterwards every call returns ErrClosed.
//   - A write whose range moved, split or merged under it is refused by the replica and re-routed,
//     never applied to the wrong range.
//   - Scan is linearizable within each range; a scan across ranges reads them one after another.
package bondkv
