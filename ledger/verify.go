package ledger

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
	"github.com/transparency-dev/merkle/compact"
)

// Kinds of item a VerifyError names.
const (
	ItemEntry      = "entry"
	ItemHeader     = "block header"
	ItemCheckpoint = "checkpoint"
	ItemNode       = "tree node"
	ItemHead       = "range head"
	ItemMeta       = "meta"
	ItemOwners     = "owners table" // Index is the checkpoint sequence it belongs to
)

// VerifyError names the first bad item of a ledger and what is wrong with it. It matches
// base.ErrCorruption.
type VerifyError struct {
	Kind  string // one of the Item constants
	Index uint64 // entry index, block number, checkpoint sequence, range ID or node index
	Level uint   // tree level, for ItemNode
	Err   error
}

func (e *VerifyError) Item() string {
	if e.Kind == ItemNode {
		return fmt.Sprintf("%s %d/%d", e.Kind, e.Level, e.Index)
	}
	return fmt.Sprintf("%s %d", e.Kind, e.Index)
}

func (e *VerifyError) Error() string   { return "ledger verify: " + e.Item() + ": " + e.Err.Error() }
func (e *VerifyError) Unwrap() []error { return []error{e.Err, base.ErrCorruption} }

func bad(kind string, index uint64, format string, args ...any) *VerifyError {
	return &VerifyError{Kind: kind, Index: index, Err: fmt.Errorf(format, args...)}
}

// Verify replays the ledger stored in db under prefix and checks, in order, for every block: the
// header's encoding, number, link to the previous header, entry span and tree size; every
// entry's encoding; the tree root after the block against the header (naming the altered entry
// by comparing with the stored leaf hashes when they disagree); every per-range chain link; and
// every stored tree node the block completed. Then the chain heads, the meta record and every
// checkpoint: its encoding, its signature (against trusted, if non-nil, else its embedded key)
// and its size, root and header hash against the replay. It returns nil or the first
// *VerifyError.
func Verify(db pebble.Reader, prefix []byte, trusted map[base.NodeID]ed25519.PublicKey) error {
	tr := &Tree{prefix: append(append([]byte(nil), prefix...), 't'), rf: rangeFactory}
	rng := rangeFactory.NewEmptyRange(0)
	heads := map[base.RangeID]head{}
	type state struct {
		size       uint64
		root, hash Hash
	}
	var blocks []state
	var prevHeader Hash
	get := func(k []byte) ([]byte, bool, error) {
		v, closer, err := db.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		defer closer.Close()
		return append([]byte(nil), v...), true, nil
	}
	// The owners table is derived for the blocks that checkpoints name (read here without
	// checks; the checkpoints are checked after the replay). Only its size, root and the hash of
	// its stored encoding are kept.
	type ownersState struct {
		size      uint64
		root, enc Hash
	}
	own := owners{}
	ownersAt := map[uint64]*ownersState{}
	for seq := uint64(0); ; seq++ {
		raw, ok, err := get(key(prefix, 'c', seq))
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if c, err := DecodeCheckpoint(raw); err == nil {
			ownersAt[c.Block] = nil
		}
	}
	for num := uint64(0); ; num++ {
		raw, ok, err := get(key(prefix, 'b', num))
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		hdr, err := DecodeBlockHeader(raw)
		if err != nil {
			return &VerifyError{Kind: ItemHeader, Index: num, Err: err}
		}
		switch {
		case hdr.Number != num:
			return bad(ItemHeader, num, "stored as block %d but numbered %d", num, hdr.Number)
		case hdr.Prev != prevHeader:
			return bad(ItemHeader, num, "links to header hash %s, but the previous header hashes to %s", hdr.Prev, prevHeader)
		case hdr.First != rng.End():
			return bad(ItemHeader, num, "first entry %d, but the previous block ended at %d", hdr.First, rng.End())
		case hdr.Count == 0:
			return bad(ItemHeader, num, "empty block")
		}
		entries := make([]Entry, hdr.Count)
		leaves := make([]Hash, hdr.Count)
		for i := range entries {
			idx := hdr.First + uint64(i)
			raw, ok, err := get(key(prefix, 'e', idx))
			if err != nil {
				return err
			}
			if !ok {
				return bad(ItemEntry, idx, "missing (block %d holds entries %d to %d)", num, hdr.First, hdr.TreeSize-1)
			}
			if entries[i], err = DecodeEntry(raw); err != nil {
				return &VerifyError{Kind: ItemEntry, Index: idx, Err: err}
			}
			leaves[i] = LeafHash(raw)
		}
		type node struct {
			id   compact.NodeID
			hash []byte
		}
		var nodes []node
		visit := func(id compact.NodeID, h []byte) { nodes = append(nodes, node{id, h}) }
		for i := range leaves {
			if err := rng.Append(leaves[i][:], visit); err != nil {
				return err
			}
		}
		if root := rootOf(rng); root != hdr.Root {
			// Either an entry or the header was altered. A stored leaf hash that disagrees with
			// its entry names the entry.
			for i := range leaves {
				idx := hdr.First + uint64(i)
				if s, ok, _ := get(tr.nodeKey(compact.NewNodeID(0, idx))); ok && Hash(s) != leaves[i] {
					return bad(ItemEntry, idx, "hashes to %s, but the tree and block %d recorded %s (content altered)",
						leaves[i], num, Hash(s))
				}
			}
			return bad(ItemHeader, num, "root %s, but its entries give %s", hdr.Root, root)
		}
		for i := range entries {
			e := &entries[i]
			idx := hdr.First + uint64(i)
			h, ok := heads[e.Range]
			if e.Prev != h.hash {
				if !ok {
					return bad(ItemEntry, idx, "%s chain gap: links to %s, but %s has no earlier entry in the ledger", e.Range, e.Prev, e.Range)
				}
				return bad(ItemEntry, idx, "%s chain gap: links to %s, but the previous entry of %s is entry %d (%s): an entry between them is missing",
					e.Range, e.Prev, e.Range, h.index, h.hash)
			}
			heads[e.Range] = head{leaves[i], idx}
		}
		d := newOwnersDelta(own)
		for i := range entries {
			d.apply(&entries[i], hdr.First+uint64(i))
		}
		d.commit()
		if _, ok := ownersAt[num]; ok {
			t := newOwnersTable(own.sorted())
			ownersAt[num] = &ownersState{uint64(len(t.rows)), t.root(), sum256(t.enc)}
		}
		for _, n := range nodes {
			s, ok, err := get(tr.nodeKey(n.id))
			if err != nil {
				return err
			}
			if !ok || len(s) != HashSize || Hash(s) != Hash(n.hash) {
				return &VerifyError{Kind: ItemNode, Level: n.id.Level, Index: n.id.Index,
					Err: fmt.Errorf("stored %x, replay gives %x", s, n.hash)}
			}
		}
		prevHeader = headerHash(raw)
		blocks = append(blocks, state{rng.End(), hdr.Root, prevHeader})
	}
	size := rng.End()
	if _, ok, err := get(key(prefix, 'e', size)); err != nil {
		return err
	} else if ok {
		return bad(ItemEntry, size, "not in any block (the last block ends at %d)", size)
	}
	for id, h := range heads {
		v, _, err := get(key(prefix, 'h', uint64(id)))
		if err != nil {
			return err
		}
		if len(v) != HashSize+8 || Hash(v[:HashSize]) != h.hash || binary.BigEndian.Uint64(v[HashSize:]) != h.index {
			return bad(ItemHead, uint64(id), "stored %x, replay gives entry %d (%s)", v, h.index, h.hash)
		}
	}
	meta, _, err := get(append(append([]byte(nil), prefix...), 'm'))
	if err != nil {
		return err
	}
	if len(meta) != 8+HashSize+8 || binary.BigEndian.Uint64(meta) != uint64(len(blocks)) || Hash(meta[8:8+HashSize]) != prevHeader {
		return bad(ItemMeta, 0, "stored %x disagrees with %d blocks ending in header %s", meta, len(blocks), prevHeader)
	}
	ncp := binary.BigEndian.Uint64(meta[8+HashSize:])
	for seq := uint64(0); ; seq++ {
		raw, ok, err := get(key(prefix, 'c', seq))
		if err != nil {
			return err
		}
		if !ok {
			if seq != ncp {
				return bad(ItemCheckpoint, seq, "missing (meta counts %d checkpoints)", ncp)
			}
			if _, ok, err := get(key(prefix, 'o', seq)); err != nil {
				return err
			} else if ok {
				return bad(ItemOwners, seq, "stored without a checkpoint")
			}
			return nil
		}
		c, err := DecodeCheckpoint(raw)
		if err != nil {
			return &VerifyError{Kind: ItemCheckpoint, Index: seq, Err: err}
		}
		if err := c.Verify(trusted); err != nil {
			return &VerifyError{Kind: ItemCheckpoint, Index: seq, Err: err}
		}
		if c.Block >= uint64(len(blocks)) {
			return bad(ItemCheckpoint, seq, "signs block %d, but the ledger has %d blocks (truncated?)", c.Block, len(blocks))
		}
		if b := blocks[c.Block]; b.size != c.TreeSize || b.root != c.Root || b.hash != c.HeaderHash {
			return bad(ItemCheckpoint, seq, "signs size %d root %s header %s; block %d has size %d root %s header %s",
				c.TreeSize, c.Root, c.HeaderHash, c.Block, b.size, b.root, b.hash)
		}
		t := ownersAt[c.Block]
		if t == nil { // cannot happen: the checkpoint decoded before the replay too
			return bad(ItemCheckpoint, seq, "block %d was not replayed for its owners table", c.Block)
		}
		if c.OwnersSize != t.size || c.OwnersRoot != t.root {
			return bad(ItemCheckpoint, seq, "signs an owners table of %d rows with root %s; block %d gives %d rows with root %s",
				c.OwnersSize, c.OwnersRoot, c.Block, t.size, t.root)
		}
		stored, ok, err := get(key(prefix, 'o', seq))
		if err != nil {
			return err
		}
		if !ok {
			return bad(ItemOwners, seq, "missing")
		}
		if sum256(stored) != t.enc {
			if _, err := decodeOwnersTable(stored); err != nil {
				return &VerifyError{Kind: ItemOwners, Index: seq, Err: err}
			}
			return bad(ItemOwners, seq, "differs from the table block %d gives (signed root %s)", c.Block, c.OwnersRoot)
		}
	}
}
