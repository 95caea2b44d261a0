package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
)

// Ledger is the ownership ledger stored in a Pebble DB under a prefix it owns:
//
//	P e <index:8 BE>    encoded entry
//	P b <number:8 BE>   encoded block header
//	P c <seq:8 BE>      encoded signed checkpoint
//	P o <seq:8 BE>      the owners table the checkpoint signs (ownerproof.go)
//	P h <range:8 BE>    head of the range's chain: leaf hash (32) ‖ entry index (8)
//	P m                 blocks (8) ‖ last header hash (32) ‖ checkpoints (8)
//	P t …               the Merkle tree (see Tree)
//
// A block's entries, header, tree nodes, chain heads and meta are written in one synced batch,
// a checkpoint and its owners table in another.
// A Ledger has one writer; its methods serialise.
type Ledger struct {
	db     *pebble.DB
	prefix []byte
	tree   *Tree

	mu          sync.Mutex
	blocks      uint64
	lastHeader  Hash
	checkpoints uint64
	owners      owners // after the last block
}

func key(prefix []byte, kind byte, n uint64) []byte {
	k := make([]byte, 0, len(prefix)+9)
	k = append(append(k, prefix...), kind)
	return binary.BigEndian.AppendUint64(k, n)
}

func (l *Ledger) metaKey() []byte { return append(append([]byte(nil), l.prefix...), 'm') }

// Open opens the ledger stored in db under prefix (empty if none).
func Open(db *pebble.DB, prefix []byte) (*Ledger, error) {
	l := &Ledger{db: db, prefix: append([]byte(nil), prefix...), owners: owners{}}
	var err error
	if l.tree, err = OpenTree(db, append(append([]byte(nil), prefix...), 't')); err != nil {
		return nil, err
	}
	v, closer, err := db.Get(l.metaKey())
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("ledger: meta: %w", err)
	default:
		defer closer.Close()
		if len(v) != 8+HashSize+8 {
			return nil, fmt.Errorf("ledger: meta of %d bytes: %w", len(v), base.ErrCorruption)
		}
		l.blocks = binary.BigEndian.Uint64(v)
		l.lastHeader = Hash(v[8 : 8+HashSize])
		l.checkpoints = binary.BigEndian.Uint64(v[8+HashSize:])
	}
	if err := l.loadOwners(); err != nil {
		return nil, err
	}
	return l, nil
}

// loadOwners rebuilds the current owners table: the last checkpoint's table, then the entries
// appended since.
func (l *Ledger) loadOwners() error {
	var from uint64
	if l.checkpoints > 0 {
		seq := l.checkpoints - 1
		c, err := l.CheckpointAt(seq)
		if err != nil {
			return err
		}
		raw, closer, err := l.db.Get(key(l.prefix, 'o', seq))
		if err != nil {
			return fmt.Errorf("ledger: owners table of checkpoint %d: %w", seq, err)
		}
		t, err := decodeOwnersTable(raw)
		closer.Close()
		if err != nil {
			return fmt.Errorf("checkpoint %d: %w", seq, err)
		}
		for _, r := range t.rows {
			l.owners[r.Range] = r
		}
		from = c.TreeSize
	}
	d := newOwnersDelta(l.owners)
	for idx := from; idx < l.Size(); idx++ {
		e, err := l.Entry(idx)
		if err != nil {
			return err
		}
		d.apply(&e, idx)
	}
	d.commit()
	return nil
}

// Tree returns the ledger's Merkle tree, for roots and proofs.
func (l *Ledger) Tree() *Tree { return l.tree }

// Size returns the number of entries.
func (l *Ledger) Size() uint64 { return l.tree.Size() }

func (l *Ledger) writeMeta(w pebble.Writer) error {
	v := binary.BigEndian.AppendUint64(nil, l.blocks)
	v = append(v, l.lastHeader[:]...)
	v = binary.BigEndian.AppendUint64(v, l.checkpoints)
	return w.Set(l.metaKey(), v, nil)
}

type head struct {
	hash  Hash
	index uint64
}

func (l *Ledger) head(r pebble.Reader, id base.RangeID) (head, bool, error) {
	v, closer, err := r.Get(key(l.prefix, 'h', uint64(id)))
	if errors.Is(err, pebble.ErrNotFound) {
		return head{}, false, nil
	}
	if err != nil {
		return head{}, false, err
	}
	defer closer.Close()
	if len(v) != HashSize+8 {
		return head{}, false, fmt.Errorf("ledger: head of %s: %w", id, base.ErrCorruption)
	}
	return head{Hash(v[:HashSize]), binary.BigEndian.Uint64(v[HashSize:])}, true, nil
}

// AppendBlock appends entries as one block: it sets each entry's Prev to the leaf hash of the
// previous entry of its range, writes everything in one synced batch and returns the header.
// On error nothing is written. The entries' Prev fields are overwritten.
func (l *Ledger) AppendBlock(entries []Entry) (BlockHeader, error) {
	return l.appendBlock(entries, true)
}

// appendBlock with link=false keeps the entries' Prev as given (tests build forged ledgers).
func (l *Ledger) appendBlock(entries []Entry, link bool) (BlockHeader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(entries) == 0 || len(entries) > math.MaxUint32 {
		return BlockHeader{}, fmt.Errorf("%w: a block holds 1 to 2^32-1 entries, not %d", ErrInvalidEntry, len(entries))
	}
	b := l.db.NewBatch()
	defer b.Close()
	first := l.tree.Size()
	heads := map[base.RangeID]head{}
	own := newOwnersDelta(l.owners)
	leaves := make([]Hash, len(entries))
	var buf []byte
	for i := range entries {
		e := &entries[i]
		idx := first + uint64(i)
		if link {
			h, ok := heads[e.Range]
			if !ok {
				var err error
				if h, _, err = l.head(l.db, e.Range); err != nil {
					return BlockHeader{}, err
				}
			}
			e.Prev = h.hash
		}
		var err error
		if buf, err = e.AppendEncode(buf[:0]); err != nil {
			return BlockHeader{}, fmt.Errorf("entry %d of block: %w", i, err)
		}
		leaves[i] = LeafHash(buf)
		heads[e.Range] = head{leaves[i], idx}
		own.apply(e, idx)
		if err := b.Set(key(l.prefix, 'e', idx), buf, nil); err != nil {
			return BlockHeader{}, err
		}
	}
	for id, h := range heads {
		v := binary.BigEndian.AppendUint64(append(make([]byte, 0, HashSize+8), h.hash[:]...), h.index)
		if err := b.Set(key(l.prefix, 'h', uint64(id)), v, nil); err != nil {
			return BlockHeader{}, err
		}
	}
	p, err := l.tree.prepare(b, leaves)
	if err != nil {
		return BlockHeader{}, err
	}
	hdr := BlockHeader{Number: l.blocks, Prev: l.lastHeader, First: first, Count: uint32(len(entries)),
		TreeSize: p.rng.End(), Root: rootOf(p.rng)}
	enc := hdr.Encode()
	if err := b.Set(key(l.prefix, 'b', hdr.Number), enc, nil); err != nil {
		return BlockHeader{}, err
	}
	oldBlocks, oldLast := l.blocks, l.lastHeader
	l.blocks, l.lastHeader = hdr.Number+1, headerHash(enc)
	err = l.writeMeta(b)
	if err == nil {
		err = b.Commit(pebble.Sync)
	}
	if err != nil {
		l.blocks, l.lastHeader = oldBlocks, oldLast
		return BlockHeader{}, fmt.Errorf("ledger: append block %d: %w", hdr.Number, err)
	}
	l.tree.install(p)
	own.commit()
	return hdr, nil
}

// Checkpoint signs the ledger's state after its last block with key, stores the checkpoint and
// returns it. The ledger must hold at least one block.
func (l *Ledger) Checkpoint(nk *NodeKey) (Checkpoint, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.blocks == 0 {
		return Checkpoint{}, errors.New("ledger: checkpoint of an empty ledger")
	}
	t := newOwnersTable(l.owners.sorted())
	c := Checkpoint{TreeSize: l.tree.Size(), Root: l.tree.Root(), Block: l.blocks - 1, HeaderHash: l.lastHeader,
		OwnersSize: uint64(len(t.rows)), OwnersRoot: t.root()}
	nk.sign(&c)
	b := l.db.NewBatch()
	defer b.Close()
	if err := b.Set(key(l.prefix, 'c', l.checkpoints), c.Encode(), nil); err != nil {
		return Checkpoint{}, err
	}
	if err := b.Set(key(l.prefix, 'o', l.checkpoints), t.enc, nil); err != nil {
		return Checkpoint{}, err
	}
	l.checkpoints++
	err := l.writeMeta(b)
	if err == nil {
		err = b.Commit(pebble.Sync)
	}
	if err != nil {
		l.checkpoints--
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint: %w", err)
	}
	return c, nil
}

// CheckpointAt returns stored checkpoint seq (0 is the first); the error wraps base.ErrNotFound
// if there is none. It does not check the signature.
func (l *Ledger) CheckpointAt(seq uint64) (Checkpoint, error) {
	v, closer, err := l.db.Get(key(l.prefix, 'c', seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint %d: %w", seq, base.ErrNotFound)
	}
	if err != nil {
		return Checkpoint{}, err
	}
	defer closer.Close()
	c, err := DecodeCheckpoint(v)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %d: %w", seq, err)
	}
	return c, nil
}

// Owners returns the current owners table (after the last block), its rows sorted by range.
func (l *Ledger) Owners() []OwnerRow {
	l.mu.Lock()
	defer l.mu.Unlock()
	rows := l.owners.sorted()
	for i := range rows {
		rows[i].Replicas = slices.Clone(rows[i].Replicas)
	}
	return rows
}

// Entry returns the entry at index.
func (l *Ledger) Entry(index uint64) (Entry, error) {
	v, closer, err := l.db.Get(key(l.prefix, 'e', index))
	if errors.Is(err, pebble.ErrNotFound) {
		return Entry{}, fmt.Errorf("ledger: entry %d: %w", index, base.ErrNotFound)
	}
	if err != nil {
		return Entry{}, err
	}
	defer closer.Close()
	return DecodeEntry(v)
}
