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
//
// Transactions (DESIGN.md §5; txn.go): Update and View are strictly serializable. Reads record
// versions and writes are buffered; keys in one range commit with one Raft command that checks
// the read versions (1PC). Across ranges (2PC) the range of the anchor (the first written key)
// is prepared first and gets the transaction's record on the anchor's intent, then the other
// ranges are prepared in parallel, then the record is flipped to committed (the commit point),
// and the intents are resolved in the background, the anchor's last. Readers and writers that
// meet an intent look up the record; pending records past their expiry are aborted by whoever
// meets them and by each node's periodic sweep. Design change from DESIGN.md §5: the record
// lives on the anchor key's intent (so it moves with the key through splits and merges) and is
// created by the anchor range's prepare, before the other prepares, rather than in parallel
// with them; three consensus rounds on the commit path. The commit flip re-checks the scans of
// the anchor's range, so a read-write transaction across ranges may scan in that range only
// (ErrScanAcrossRanges). Intents are exclusive: a read lock is an intent.
//
// Eventual ranges (eventual.go): RangePolicy.Consistency = Eventual makes Get read the nearest
// replica within Options.Ranges.MaxStaleness (GetStale reports the staleness); PutIfVersion
// and the built-in merge functions (MergeCounter, MergeSet, MergeLWW) keep concurrent writers
// from losing updates.
package bondkv
