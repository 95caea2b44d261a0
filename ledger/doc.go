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
// and header hash) is signed with the node's Ed25519 key, created on first use and kept in a
// 0600 file in the node's directory.
//
// # Verification
//
// Verify replays a ledger stored in Pebble and checks every entry encoding, leaf hash, tree node,
// block header link, per-range chain link and checkpoint signature; it returns a *VerifyError
// naming the first bad item (entry index, block number, tree node or checkpoint) and what is
// wrong with it.
//
// Not here yet: the owners table and its root per checkpoint, the replicated group, serving
// proofs over the wire.
package ledger
