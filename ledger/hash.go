package ledger

import (
	"encoding/hex"

	sha256simd "github.com/minio/sha256-simd"
)

// HashSize is the size of every hash in the ledger: SHA-256.
const HashSize = 32

// Hash is a SHA-256 digest: a leaf, tree node, header or chain link.
type Hash [HashSize]byte

// String returns the hash as lowercase hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zero bytes (the Prev of a range's first entry).
func (h Hash) IsZero() bool { return h == Hash{} }

// Domain-separation prefixes (RFC 6962 §2.1 for leaves and nodes; the header prefix is ours).
const (
	leafPrefix   = 0x00
	nodePrefix   = 0x01
	headerPrefix = 0x02
)

// sum256 is the one function through which the ledger hashes. sha256-simd and crypto/sha256
// produce identical digests; sha256-simd is faster here for the 65-byte interior nodes (see
// BenchmarkSum256).
func sum256(b []byte) Hash { return sha256simd.Sum256(b) }

// LeafHash returns the RFC 6962 leaf hash of an encoded entry: SHA-256(0x00‖entry).
func LeafHash(entry []byte) Hash {
	var buf [512]byte
	var b []byte
	if len(entry)+1 <= len(buf) {
		b = buf[:len(entry)+1]
	} else {
		b = make([]byte, len(entry)+1)
	}
	b[0] = leafPrefix
	copy(b[1:], entry)
	return sum256(b)
}

// NodeHash returns the RFC 6962 interior node hash: SHA-256(0x01‖left‖right).
func NodeHash(left, right Hash) Hash {
	var b [1 + 2*HashSize]byte
	b[0] = nodePrefix
	copy(b[1:], left[:])
	copy(b[1+HashSize:], right[:])
	return sum256(b[:])
}

// Hasher is an RFC 6962 merkle.LogHasher over SHA-256 that hashes through sum256. Its output is
// identical to transparency-dev/merkle's rfc6962.DefaultHasher.
type Hasher struct{}

// EmptyRoot returns SHA-256 of the empty string, the root of an empty tree.
func (Hasher) EmptyRoot() []byte { h := sum256(nil); return h[:] }

// HashLeaf returns SHA-256(0x00‖leaf).
func (Hasher) HashLeaf(leaf []byte) []byte { h := LeafHash(leaf); return h[:] }

// HashChildren returns SHA-256(0x01‖l‖r).
func (Hasher) HashChildren(l, r []byte) []byte {
	var buf [1 + 2*HashSize]byte
	b := buf[:0]
	if len(l)+len(r) > 2*HashSize {
		b = make([]byte, 0, 1+len(l)+len(r))
	}
	b = append(append(append(b, nodePrefix), l...), r...)
	h := sum256(b)
	return h[:]
}

// Size returns HashSize.
func (Hasher) Size() int { return HashSize }
