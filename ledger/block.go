package ledger

import (
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
)

// HeaderVersion is the block header encoding version.
const HeaderVersion = 1

// BlockHeader closes one block: a batch of entries appended atomically (in the replicated
// ledger, one Raft proposal). Its canonical encoding is
//
//	u8 version | u64 number | [32] prev | u64 first | u32 count | u64 tree size | [32] root
//
// Every field can be checked by replaying the ledger: the number counts from 0, Prev is the hash
// of the previous header (zero for block 0), First and Count locate the entries, TreeSize =
// First + Count and Root is the tree root after the block.
type BlockHeader struct {
	Number   uint64
	Prev     Hash
	First    uint64
	Count    uint32
	TreeSize uint64
	Root     Hash
}

// Encode returns the canonical encoding of h.
func (h *BlockHeader) Encode() []byte {
	e := encoder{b: make([]byte, 0, 1+8+HashSize+8+4+8+HashSize)}
	e.u8(HeaderVersion)
	e.u64(h.Number)
	e.hash(h.Prev)
	e.u64(h.First)
	e.u32(h.Count)
	e.u64(h.TreeSize)
	e.hash(h.Root)
	return e.b
}

// Hash returns SHA-256(0x02‖encoding), the value the next header's Prev and checkpoints carry.
func (h *BlockHeader) Hash() Hash { return headerHash(h.Encode()) }

func headerHash(enc []byte) Hash {
	b := make([]byte, 0, 1+len(enc))
	return sum256(append(append(b, headerPrefix), enc...))
}

// DecodeBlockHeader decodes a canonical header; errors wrap base.ErrCorruption.
func DecodeBlockHeader(b []byte) (BlockHeader, error) {
	d := decoder{b: b}
	var h BlockHeader
	if v := d.u8(); d.err == nil && v != HeaderVersion {
		d.fail("unknown version %d", v)
	}
	h.Number = d.u64()
	h.Prev = d.hash()
	h.First = d.u64()
	h.Count = d.u32()
	h.TreeSize = d.u64()
	h.Root = d.hash()
	if err := d.finish("block header"); err != nil {
		return BlockHeader{}, err
	}
	if h.TreeSize != h.First+uint64(h.Count) || h.TreeSize < h.First {
		return BlockHeader{}, fmt.Errorf("ledger: decode block header: tree size %d ≠ first %d + count %d: %w",
			h.TreeSize, h.First, h.Count, base.ErrCorruption)
	}
	return h, nil
}
