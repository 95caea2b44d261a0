// Package store is the storage engine of one bondkv node: one pebble/v2 DB holding every range
// replica the node has, the versioned value records of DESIGN.md §4, the application of
// replicated commands, range snapshots and replica checksums.
//
// # Layering
//
// store sits at the bottom (DESIGN.md §1): raftgroup's state machine drives it, and it imports
// only internal/base (key layout, limits, sentinel errors) and pebble. It knows nothing of Raft:
// an Entry is just an index and a payload, and it is the caller's job to hand over committed
// entries in order and to make reads linearizable.
//
// # Key layout and records
//
// Keys follow internal/base:
//
//	d/<userkey>          value record  {version uint64 BE | flags byte | value}
//	i/<userkey>          intent (2PC; written by a later layer, carried by snapshots and checksums)
//	r/<rangeID>/applied  the range's applied index, uint64 BE
//	r/<rangeID>/...      other range-local metadata (carried by snapshots)
//	x/<key>              node-local (PutNodeLocal), never replicated
//
// A record's version is the Raft index of the entry that wrote it. A delete writes a tombstone
// record (flags bit 0, empty value) carrying its version, so the version of an absent key is
// known: Get and Scan hide tombstones, GetRecord shows them. A key never written has no record
// (version 0 to a transaction). Records that do not decode are reported as base.ErrCorruption.
//
// # Commands
//
// One Raft entry carries a batch of commands (EncodeCommands):
//
//	version byte (1) | count uvarint | count × (op byte | keyLen uvarint | key | [valueLen uvarint | value])
//
// with a value for OpPut only. There is no checksum (Raft checksums entries). The encoding is
// canonical and DecodeCommands rejects anything else with base.ErrCorruption, never panicking.
//
// # Invariants and guarantees
//
//   - Apply writes an ordered run of entries of one range and the range's applied index in one
//     pebble batch. After any crash the engine holds exactly the effects of the entries up to
//     the stored applied index and none after it (checked by crash tests on a crashable
//     filesystem). Apply commits without fsync; Sync fsyncs the WAL, so everything applied
//     before a Sync that returned survives a crash.
//   - Apply is deterministic: the same entries give the same records and Results on every
//     replica. An entry that does not decode or breaks a limit (base.CheckKey, base.CheckValue)
//     is skipped whole and reported ResultRejected; it still advances the applied index. An
//     entry at or below the applied index is skipped (ResultSkipped), so re-applying entries
//     after a restart is a no-op. Apply fails only for engine failures and malformed calls.
//   - Applies, snapshot recoveries and clears of one range are serialized; different ranges
//     proceed concurrently. Reads (Get, GetRecord, Scan) see a consistent view of the engine.
//   - Node-local keys are outside every range: snapshots, recoveries, clears and checksums never
//     touch them.
//   - Returned byte slices are copies owned by the caller, except the Key and Value of commands
//     returned by DecodeCommands, which alias its input.
//   - Close waits for calls in flight, stops snapshot streams in progress (they fail with
//     base.ErrClosed), releases open snapshots and is idempotent; every later call returns
//     base.ErrClosed.
//
// # Snapshots
//
// A Snapshot is a pebble snapshot of the engine plus the range's applied index at that moment.
// WriteTo streams the range's data, intent and range-local spans:
//
//	magic "bondkvSS" | format version uint16 (1) | range id uint64 | applied index uint64
//	span start (uvarint length | bytes) | span end (0 = unbounded | 1, uvarint length | bytes)
//	records: 1 | uvarint keyLen | engine key | uvarint valueLen | value   (strictly ascending)
//	trailer: 0 | record count uint64 | SHA-256 of every preceding byte
//
// The applied-index key is not a record: the header carries it. RecoverSnapshot reads and
// validates the whole stream (framing, key order, every key inside the range's spans, value
// records decodable, count, checksum, nothing trailing) while building one pebble batch that
// deletes the range's three spans, writes the records and the applied index; only a valid
// stream is committed, with fsync. A truncated or corrupt stream wraps base.ErrCorruption; a
// valid stream of another range or span is a *SnapshotMismatchError; either way nothing
// changes.
//
// Checksum hashes (SHA-256) the applied index and the data and intent spans of a range at one
// pebble snapshot; replicas at the same applied index must agree.
//
// # Caveats
//
//   - RecoverSnapshot holds the whole range in memory (one pebble batch). That is fine for ranges
//     up to the split size (64 MiB); larger ranges would need an sstable built from the stream
//     and ingested with the span excised.
//   - Tombstones are never garbage-collected: a deleted key keeps a 9-byte record. Removing old
//     tombstones safely needs a GC threshold agreed with the transaction layer.
//   - An open Snapshot pins old data against compaction; close it promptly.
//   - The applied index of each range is cached in memory; writing range-local keys through
//     DB() bypasses that cache and the engine's invariants. DB() is for inspection.
package store
