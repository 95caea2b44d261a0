// Package store is the storage engine of one bondkv node: one pebble/v2 DB holding every range
// replica the node has, the versioned value records of DESIGN.md §4, the application of
// replicated commands (writes, range-local records, split, merge, freeze, transaction
// commands, merge functions), range states,
// range snapshots and replica checksums.
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
//	d/<userkey>            value record  {version uint64 BE | flags byte | value}
//	i/<userkey>            intent of a distributed transaction (Intent, EncodeIntent; the anchor's
//	                       carries the transaction's record)
//	r/<rangeID>/applied    the range's applied index, uint64 BE
//	r/<rangeID>/state      the range's RangeState (below)
//	r/<rangeID>/u/<key>    range-local record (OpPutLocal...), a value record like d/
//	r/<rangeID>/...        other range-local metadata (carried by snapshots and checksums)
//	x/<key>                node-local (PutNodeLocal), never replicated
//
// Data records are shared by key, not owned by a range id: a split or merge moves no data, it
// only changes which range's span covers the key. Range-local keys belong to one range id.
//
// A record's version is VersionBase+i, where i is the Raft index of the entry that wrote it and
// VersionBase comes from the writing range's state (0 for a range bootstrapped from nothing, so
// there the version is the Raft index). A delete writes a tombstone record (flags bit 0, empty
// value) carrying its version, so the version of an absent key is known: Get and Scan hide
// tombstones, GetRecord shows them. A key never written has no record (version 0 to a
// transaction). Records that do not decode are reported as base.ErrCorruption.
//
// # Range state
//
// Each range replica has a RangeState under r/<id>/state, written in the same batch as the
// applied index:
//
//	version byte (1) | flags byte (bit 0 frozen) | generation uint64 BE | version base uint64 BE | span
//	span: start (uvarint length | bytes) | end: 0 (unbounded) or 1, uvarint length | bytes
//
// InitRange creates it (bootstrap); Apply changes it (split, merge, freeze); RecoverSnapshot
// replaces it with the sender's; DestroyRange and ClearRange delete it. Ranges lists the ranges
// that have one. A range with no state behaves as base.NoSpan: its data writes are out of span,
// its admin commands rejected; range-local writes still apply. base.NoSpan (the meta range)
// owns no user key: such a range has no data or intent span at all in snapshots, checksums and
// clears.
//
// Versions never go backwards across splits and merges. A split at entry i of the left range
// gives the new right range VersionBase = left.VersionBase+i, so every entry of the right range
// (index >= 1) writes above every version the left range wrote. A merge is proposed to the left
// range after the right range was frozen; it carries RightVersion = the right range's
// VersionBase+applied at the freeze, and at entry i sets the left range's VersionBase to
// max(VersionBase, RightVersion-i) (0 if negative), so entries after it write above
// RightVersion as well as above the left range's own versions.
//
// # Commands
//
// One Raft entry carries a batch of commands (EncodeCommands):
//
//	version byte (1) | count uvarint | count × command
//	command:   op byte | keyLen uvarint | key | [valueLen uvarint | value] | [condition]
//	condition: 1 (expect absent) | 0, expectLen uvarint | expect          (OpCPutLocal only)
//
// The key is always present (empty for freeze, unfreeze, merge); the value is present for put (1),
// put-local (3), cput-local (5), split (6: the new range id, 8 bytes BE) and merge (9: MergeArgs,
// below); delete (2), delete-local (4), freeze (7) and unfreeze (8) have none. MergeArgs are
//
//	version byte (1) | right id uint64 BE | right generation uint64 BE | right version uint64 BE | right span
//
// There is no checksum (Raft checksums entries). The encoding is canonical and DecodeCommands
// rejects anything else with base.ErrCorruption, never panicking. ValidateCommands checks limits
// and that an admin command (split, freeze, unfreeze, merge) is alone in its batch; IsExclusive
// tells a proposer which batches (admin, or holding a conditional put) it must not merge with
// other writers' commands.
//
// # Applying an entry
//
// Every entry takes effect whole or not at all; checks in this order decide its ResultCode:
// does not decode or validate (Rejected); a data write outside the span (OutOfSpan); the range
// is frozen and the entry writes (Frozen: data, local, split, merge; freeze on a frozen range is
// a no-op, unfreeze applies); an OpCPutLocal condition fails (ConditionFailed; conditions are
// checked in command order and see the entry's own earlier writes and earlier entries'). Then:
//
//   - OpSplit(key, new, members): key must be strictly inside the span and new must differ from the
//     range, else Rejected (base.ErrInvalidRange). The range keeps [Start, key) with generation+1;
//     r/<new>/state becomes {[key, End), the same generation, VersionBase+i, not frozen} unless
//     new already has a state on this node (created from a snapshot first), which is then left
//     alone: the one case where replicas may differ, and only in a state Apply did not create.
//     The new range's applied index stays absent (0).
//   - OpMerge(args): the right span must start where this (bounded, non-empty) span ends, else
//     Rejected. The span becomes [Start, RightSpan.End), generation max(gen, RightGeneration)+1,
//     VersionBase as above, and r/<right>/state is deleted in the same batch (the right range's
//     other range-local keys stay until DestroyRange).
//   - OpFreeze, OpUnfreeze set and clear Frozen.
//
// Within an applied entry, one command can be skipped on its own, reported in
// Result.Conflicts by its position: an OpPut, OpDelete or OpMergeValue whose key holds another
// transaction's intent; an OpMergeValue whose stored value its function cannot read; a
// transaction command whose checks fail (OpTxnCommit, OpTxnPrepare: a read version changed, a
// scan's digest changed, a key held by another's intent; OpTxnStatus: the record is not pending
// or not there). That is why transaction commands share entries with other writers. An entry
// with such commands is applied with an indexed batch, so each command sees the effects of the
// commands and entries before it.
//
// # Invariants and guarantees
//
//   - Apply writes an ordered run of entries of one range, the range's applied index and every
//     range state the entries change (its own, a split's new range, a merged range) in one
//     pebble batch. After any crash the engine holds exactly the effects of the entries up to
//     the stored applied index and none after it (checked by crash tests on a crashable
//     filesystem). Apply commits without fsync; Sync fsyncs the WAL, so everything applied
//     before a Sync that returned survives a crash.
//   - Apply is deterministic: the same entries give the same records and Results on every
//     replica. An entry that does not decode or breaks a limit (base.CheckKey, base.CheckValue)
//     is skipped whole and reported ResultRejected; it still advances the applied index. An
//     entry at or below the applied index is skipped (ResultSkipped), so re-applying entries
//     after a restart is a no-op. Apply fails only for engine failures and malformed calls.
//   - Applies, snapshot recoveries, inits, destroys and clears of one range are serialized;
//     different ranges proceed concurrently. An Apply that splits or merges also holds the other
//     range's lock (locks are taken in ascending range id order). Reads (Get, GetRecord, Scan,
//     GetLocal, ScanLocal) see a consistent view of the engine; Get, GetRecord and Scan are
//     engine-wide by user key, and the caller checks that the range it reads for owns the key.
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
// A Snapshot is a pebble snapshot of the engine plus the range's applied index and state at
// that moment (a range without a state cannot be snapshotted). WriteTo streams the data and
// intent spans of the state's span (none for base.NoSpan) and the range-local span:
//
//	magic "bondkvSS" | format version uint16 (2) | range id uint64 | applied index uint64
//	span start (uvarint length | bytes) | span end (0 = unbounded | 1, uvarint length | bytes)
//	records: 1 | uvarint keyLen | engine key | uvarint valueLen | value   (strictly ascending)
//	trailer: 0 | record count uint64 | SHA-256 of every preceding byte
//
// The applied-index key is not a record: the header carries it. The header's span is the
// sender's current span, and the stream must hold a state record with exactly that span.
// RecoverSnapshot reads and validates the whole stream (framing, key order, every key inside
// the header span's data and intent spans or the range-local span, value and local records
// decodable, the state present and matching, count, checksum, nothing trailing) while building
// one pebble batch that deletes the data and intents of the header's span and the whole
// range-local span, then writes the records and the applied index; only a valid stream is
// committed, with fsync. Data the replica had outside the new span (it was split away) is left
// alone: another range owns it. A truncated or corrupt stream wraps base.ErrCorruption; a valid
// stream of another range is a *SnapshotMismatchError; either way nothing changes.
//
// Checksum hashes (SHA-256) the applied index, the data and intent spans of the range's span
// and its range-local span except the applied-index key (so the state and the range-local
// records are covered: divergence of the meta range is detected) at one pebble snapshot;
// replicas at the same applied index must agree.
//
// # Sizes
//
// ApproximateSize estimates a span's data on disk (sstables only, pebble's EstimateDiskUsage);
// SplitKey finds a key near the middle of a span's data by bytes, for the split queue.
//
// # Caveats
//
//   - RecoverSnapshot holds the whole range in memory (one pebble batch). That is fine for ranges
//     up to the split size (64 MiB); larger ranges would need an sstable built from the stream
//     and ingested with the span excised.
//   - Tombstones are never garbage-collected: a deleted key keeps a 9-byte record. Removing old
//     tombstones safely needs a GC threshold agreed with the transaction layer.
//   - An open Snapshot pins old data against compaction; close it promptly.
//   - The applied index and state of each range are cached in memory; writing range-local keys
//     through DB() bypasses that cache and the engine's invariants. DB() is for inspection.
//   - The engine does not check that the spans of the ranges it holds are disjoint: that is the
//     split and merge protocol's job (a stale replica may briefly hold an old, wider span).
//   - DestroyRange leaves a removed range's data behind; data no range on the node owns any more
//     is not garbage-collected yet.
package store
