// Package ledger is bondkv's ownership ledger (DESIGN.md §8): a tamper-evident, append-only
// record of every change of ownership of a range — split, merge, replica add and remove, leader
// move, bind and unbind, policy change, archive manifest, state anchor.
//
// Layering (DESIGN.md §1): ledger imports internal/base, pebble/v2, transparency-dev/merkle and
// minio/sha256-simd. It does not import the root package, shard or raftgroup; this package is the
// self-contained core. Replicating it through its own Raft group (range 2), writing it from the
// range code paths and the kvbench ledger commands build on this core and are not wired yet.
//
// # Entries
//
// An Entry is encoded canonically (entry.go): a version byte, a type byte, fixed-width
// big-endian integers, u32-length-prefixed byte strings and sets encoded as a u32 count followed
// by members in strictly increasing order. Decode rejects trailing bytes, bad lengths, unknown
// versions and types, non-0/1 booleans, zero range IDs and unsorted or duplicate set members,
// with errors that wrap base.ErrCorruption. For every b that Decode accepts, Encode(Decode(b))
// == b, so an entry has exactly one encoding and its hash identifies it.
//
// # Hashes and the Merkle tree
//
// The entries are the leaves of an RFC 6962 Merkle tree: leaf = SHA-256(0x00‖entry), node =
// SHA-256(0x01‖left‖right). All hashing goes through sum256 (hash.go), which uses
// minio/sha256-simd (measured faster than crypto/sha256 for the 65-byte interior nodes; the
// digests are identical). Every perfect subtree node is stored in Pebble under the tree's prefix,
// so an inclusion or consistency proof reads O(log n) nodes; proofs are assembled and verified
// with transparency-dev/merkle's proof package.
//
// # Chains, blocks, checkpoints
//
// Each entry carries Prev, the leaf hash of the previous entry of the same range (zero for the
// range's first entry), so a verifier names a dropped entry. A block is a batch of entries
// appended atomically (one Pebble batch; in the replicated ledger, one Raft proposal); its header
// records the block number, the previous header's hash, the first index and count of its
// entries, and the tree size and root after it. A checkpoint (tree size, root, last block number
// and header hash, owners table size and root) is signed with the node's Ed25519 key, created on
// first use and kept in a 0600 file in the node's directory.
//
// # Owners table
//
// The owners table (owners.go) answers "who owns range R as of checkpoint N" with a proof. It
// is a pure function of the entries so far, applied in ledger order; it has one row per range
// that an ownership entry has named and that no Merge has removed since:
//
//   - Owner means the range's replica set (node, replica ID, voting or not; one replica per
//     node) and its last recorded leader and term. A row also records the Generation and the
//     ledger index of the last entry that changed it, so that entry can be proved too.
//   - Only Split, Merge, ReplicaAdd, ReplicaRemove and LeaderMove change the table. The first
//     such entry of a range creates its row with no replicas and no leader; each sets the row's
//     Generation and Index.
//   - Split: the new range gets a copy of the row (replicas, leader, term), replacing any row it
//     had. Merge: the right range's row is deleted. ReplicaAdd adds the replica, or replaces the
//     one on that node (e.g. a learner promoted to voter). ReplicaRemove removes the replica on
//     that node, and clears the leader if it was on that node. LeaderMove sets leader and term.
//   - The ledger records; it does not judge. A leader that is not a replica, a split into an
//     existing range or a merge of an unknown range is recorded as described, so every ledger
//     that decodes has exactly one table.
//
// Each checkpoint commits to the table as it stands after its block (ownerproof.go): the rows
// are encoded canonically (OwnerRow), sorted by range ID, and are the leaves of an RFC 6962 tree
// (same leaf and node hashing as the entry tree); the checkpoint signs the row count and root.
// ProveOwner returns a row, its audit path and the checkpoint; VerifyOwner checks them with only
// the trusted public key. A proof shows that a row is in the table; it does not prove that a range
// has no row (non-membership).
//
// Storage: each checkpoint stores the whole table it signs (P o <seq>), written in the
// checkpoint's batch. The alternative, rows with history, stores less when few ranges change
// between checkpoints, but a proof for an old checkpoint must then reconstruct every row as of
// that time; a per-checkpoint table is one read and O(rows) hashing for any checkpoint, and
// checkpoints are rare next to blocks. The live table is kept in memory and updated per block;
// Open rebuilds it from the last checkpoint's table and the entries after it.
//
// # Verification
//
// Verify replays a ledger stored in Pebble and checks every entry encoding, leaf hash, tree node,
// block header link, per-range chain link and checkpoint signature; it derives the owners table
// from the entries and checks each checkpoint's owners size and root and each stored table
// against it; it returns a *VerifyError naming the first bad item (entry index, block number,
// tree node, checkpoint or owners table) and what is wrong with it.
//
// Not here yet: the replicated group, serving proofs over the wire, proofs that a range has no
// owner.
package ledger
