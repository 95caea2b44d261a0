package ledger

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
	"github.com/transparency-dev/merkle/proof"
)

// ownersTable is a table in canonical form: its rows sorted by range, their leaf hashes and the
// stored encoding u8 version | u32 n | n rows.
type ownersTable struct {
	rows   []OwnerRow
	leaves []Hash
	enc    []byte
}

func newOwnersTable(rows []OwnerRow) ownersTable {
	t := ownersTable{rows: rows, leaves: make([]Hash, len(rows))}
	e := encoder{}
	e.u8(OwnerVersion)
	e.u32(uint32(len(rows)))
	for i := range rows {
		start := len(e.b)
		rows[i].encode(&e)
		t.leaves[i] = LeafHash(e.b[start:])
	}
	t.enc = e.b
	return t
}

// decodeOwnersTable decodes a stored table; it rejects anything newOwnersTable would not
// produce, with errors wrapping base.ErrCorruption.
func decodeOwnersTable(b []byte) (ownersTable, error) {
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != OwnerVersion {
		d.fail("unknown owners version %d", v)
	}
	n := d.u32()
	if d.err == nil && uint64(n)*minRowSize > uint64(len(b)-d.off) {
		d.fail("%d rows cannot fit in %d bytes", n, len(b)-d.off)
	}
	t := ownersTable{enc: b}
	if d.err == nil {
		t.rows = make([]OwnerRow, n)
		t.leaves = make([]Hash, n)
	}
	for i := range t.rows {
		start := d.off
		t.rows[i].decode(&d)
		if d.err != nil {
			break
		}
		t.leaves[i] = LeafHash(b[start:d.off])
		if i > 0 && t.rows[i-1].Range >= t.rows[i].Range {
			d.fail("rows not in strictly increasing range order at %d", i)
		}
	}
	if err := d.finish("owners table"); err != nil {
		return ownersTable{}, err
	}
	return t, nil
}

// root returns the RFC 6962 root over the table's rows.
func (t *ownersTable) root() Hash {
	rng := rangeFactory.NewEmptyRange(0)
	for i := range t.leaves {
		if err := rng.Append(t.leaves[i][:], nil); err != nil {
			panic(err) // cannot fail for a range starting at 0
		}
	}
	return rootOf(rng)
}

// find returns the position of the row of id.
func (t *ownersTable) find(id base.RangeID) (int, bool) {
	return slices.BinarySearchFunc(t.rows, id, func(r OwnerRow, id base.RangeID) int {
		switch {
		case r.Range < id:
			return -1
		case r.Range > id:
			return 1
		}
		return 0
	})
}

// inclusion returns the RFC 6962 audit path of row index.
func (t *ownersTable) inclusion(index uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, uint64(len(t.leaves)))
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		begin, end := id.Coverage()
		h := perfectRoot(t.leaves[begin:end])
		hashes[i] = h[:]
	}
	return nodes.Rehash(hashes, Hasher{}.HashChildren)
}

// perfectRoot returns the root of a perfect subtree (len(leaves) a power of two).
func perfectRoot(leaves []Hash) Hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	m := len(leaves) / 2
	return NodeHash(perfectRoot(leaves[:m]), perfectRoot(leaves[m:]))
}

// OwnerProof proves that a row is in the owners table a checkpoint signs.
type OwnerProof struct {
	// Index is the row's position in the table (rows sorted by range).
	Index uint64
	// Path is the RFC 6962 audit path of the row in a tree of Checkpoint.OwnersSize leaves.
	Path [][]byte
}

// ProveOwner returns the owners row of range id as of checkpoint seq, its inclusion proof and
// the signed checkpoint, for VerifyOwner. The error wraps base.ErrNotFound if there is no such
// checkpoint or the range has no row in its table.
func (l *Ledger) ProveOwner(id base.RangeID, seq uint64) (OwnerRow, OwnerProof, Checkpoint, error) {
	c, err := l.CheckpointAt(seq)
	if err != nil {
		return OwnerRow{}, OwnerProof{}, Checkpoint{}, err
	}
	raw, closer, err := l.db.Get(key(l.prefix, 'o', seq))
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			err = base.ErrCorruption // a checkpoint is stored with its table
		}
		return OwnerRow{}, OwnerProof{}, Checkpoint{}, fmt.Errorf("ledger: owners table of checkpoint %d: %w", seq, err)
	}
	t, err := decodeOwnersTable(raw)
	closer.Close()
	if err != nil {
		return OwnerRow{}, OwnerProof{}, Checkpoint{}, fmt.Errorf("checkpoint %d: %w", seq, err)
	}
	i, ok := t.find(id)
	if !ok {
		return OwnerRow{}, OwnerProof{}, Checkpoint{}, fmt.Errorf("ledger: %s has no owner as of checkpoint %d: %w", id, seq, base.ErrNotFound)
	}
	path, err := t.inclusion(uint64(i))
	if err != nil {
		return OwnerRow{}, OwnerProof{}, Checkpoint{}, err
	}
	return t.rows[i], OwnerProof{Index: uint64(i), Path: path}, c, nil
}

// VerifyOwner checks that row is in the owners table signed by checkpoint c, and that c is
// validly signed with trusted. It needs nothing but its arguments.
func VerifyOwner(row OwnerRow, p OwnerProof, c Checkpoint, trusted ed25519.PublicKey) error {
	if len(trusted) != ed25519.PublicKeySize || !trusted.Equal(c.PublicKey) {
		return errors.New("ledger: owner proof: checkpoint not signed by the trusted key")
	}
	if err := c.Verify(nil); err != nil {
		return fmt.Errorf("ledger: owner proof: checkpoint: %w", err)
	}
	leaf := LeafHash(row.Encode())
	if err := proof.VerifyInclusion(Hasher{}, p.Index, c.OwnersSize, leaf[:], p.Path, c.OwnersRoot[:]); err != nil {
		return fmt.Errorf("ledger: owner proof: row of %s not in the owners table of tree size %d: %w", row.Range, c.TreeSize, err)
	}
	return nil
}
