package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/cockroachdb/pebble/v2"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// Tree is an append-only RFC 6962 Merkle tree whose nodes live in Pebble. Every perfect
// subtree's root (level 0 = leaf hashes) is stored once, when it becomes complete, and never
// changes, so the root at any earlier size and any inclusion or consistency proof are computed
// from O(log n) stored nodes. The in-memory compact range of the current size makes an append
// cost O(log n) hashes and no reads.
//
// Keys under the tree's prefix P:
//
//	P n <level:1> <index:8 BE>   node hash (32 bytes)
//	P s                          tree size (8 bytes BE)
//
// A Tree has one writer; reads (roots and proofs of sizes already appended) may run
// concurrently with it.
type Tree struct {
	db     *pebble.DB
	prefix []byte
	rf     *compact.RangeFactory

	mu  sync.RWMutex
	rng *compact.Range // [0, size)
}

var rangeFactory = &compact.RangeFactory{Hash: Hasher{}.HashChildren}

// OpenTree opens the tree stored in db under prefix (an empty tree if none is stored).
func OpenTree(db *pebble.DB, prefix []byte) (*Tree, error) {
	t := &Tree{db: db, prefix: append([]byte(nil), prefix...), rf: rangeFactory}
	var size uint64
	v, closer, err := db.Get(t.sizeKey())
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("ledger: tree size: %w", err)
	default:
		if len(v) != 8 {
			closer.Close()
			return nil, fmt.Errorf("ledger: tree size of %d bytes: %w", len(v), base.ErrCorruption)
		}
		size = binary.BigEndian.Uint64(v)
		closer.Close()
	}
	hashes, err := t.readNodes(db, compact.RangeNodes(0, size, nil))
	if err != nil {
		return nil, err
	}
	if t.rng, err = t.rf.NewRange(0, size, hashes); err != nil {
		return nil, fmt.Errorf("ledger: tree: %w", err)
	}
	return t, nil
}

func (t *Tree) sizeKey() []byte { return append(append([]byte(nil), t.prefix...), 's') }

func (t *Tree) nodeKey(id compact.NodeID) []byte {
	k := make([]byte, 0, len(t.prefix)+10)
	k = append(append(k, t.prefix...), 'n', byte(id.Level))
	return binary.BigEndian.AppendUint64(k, id.Index)
}

// readNodes reads the stored hashes of ids.
func (t *Tree) readNodes(r pebble.Reader, ids []compact.NodeID) ([][]byte, error) {
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		v, closer, err := r.Get(t.nodeKey(id))
		if err != nil {
			if errors.Is(err, pebble.ErrNotFound) {
				err = base.ErrCorruption
			}
			return nil, fmt.Errorf("ledger: tree node %d/%d: %w", id.Level, id.Index, err)
		}
		if len(v) != HashSize {
			closer.Close()
			return nil, fmt.Errorf("ledger: tree node %d/%d of %d bytes: %w", id.Level, id.Index, len(v), base.ErrCorruption)
		}
		hashes[i] = append([]byte(nil), v...)
		closer.Close()
	}
	return hashes, nil
}

// Size returns the number of leaves.
func (t *Tree) Size() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.rng.End()
}

// Root returns the root hash of the current tree (SHA-256 of "" when empty).
func (t *Tree) Root() Hash {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return rootOf(t.rng)
}

func rootOf(r *compact.Range) Hash {
	root, err := r.GetRootHash(nil)
	if err != nil { // only for a range not starting at 0, which a Tree never holds
		panic(err)
	}
	if root == nil {
		return sum256(nil)
	}
	return Hash(root)
}

// pending is an append prepared in a batch but not yet visible in the Tree.
type pending struct{ rng *compact.Range }

// prepare adds leaves to a copy of the tree, writes the new nodes and size into w, and returns
// the copy; install makes it current once w is committed.
func (t *Tree) prepare(w pebble.Writer, leaves []Hash) (pending, error) {
	t.mu.RLock()
	cur := t.rng
	t.mu.RUnlock()
	hs := make([][]byte, len(cur.Hashes()))
	copy(hs, cur.Hashes())
	next, err := t.rf.NewRange(0, cur.End(), hs)
	if err != nil {
		return pending{}, err
	}
	var werr error
	visit := func(id compact.NodeID, hash []byte) {
		if err := w.Set(t.nodeKey(id), hash, nil); err != nil && werr == nil {
			werr = err
		}
	}
	for i := range leaves {
		if err := next.Append(leaves[i][:], visit); err != nil {
			return pending{}, err
		}
	}
	if werr != nil {
		return pending{}, werr
	}
	if err := w.Set(t.sizeKey(), binary.BigEndian.AppendUint64(nil, next.End()), nil); err != nil {
		return pending{}, err
	}
	return pending{rng: next}, nil
}

func (t *Tree) install(p pending) {
	t.mu.Lock()
	t.rng = p.rng
	t.mu.Unlock()
}

// Append adds leaf hashes and commits them (synced) in one batch.
func (t *Tree) Append(leaves []Hash) error {
	b := t.db.NewBatch()
	defer b.Close()
	p, err := t.prepare(b, leaves)
	if err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("ledger: tree append: %w", err)
	}
	t.install(p)
	return nil
}

func (t *Tree) checkSize(size uint64) error {
	if n := t.Size(); size > n {
		return fmt.Errorf("ledger: tree size %d beyond %d: %w", size, n, base.ErrInvalidRange)
	}
	return nil
}

// RootAt returns the root of the tree at an earlier size.
func (t *Tree) RootAt(size uint64) (Hash, error) {
	if err := t.checkSize(size); err != nil {
		return Hash{}, err
	}
	hashes, err := t.readNodes(t.db, compact.RangeNodes(0, size, nil))
	if err != nil {
		return Hash{}, err
	}
	r, err := t.rf.NewRange(0, size, hashes)
	if err != nil {
		return Hash{}, err
	}
	return rootOf(r), nil
}

// LeafHashAt returns the stored hash of leaf index.
func (t *Tree) LeafHashAt(index uint64) (Hash, error) {
	if err := t.checkSize(index + 1); err != nil {
		return Hash{}, err
	}
	h, err := t.readNodes(t.db, []compact.NodeID{compact.NewNodeID(0, index)})
	if err != nil {
		return Hash{}, err
	}
	return Hash(h[0]), nil
}

// InclusionProof returns the RFC 6962 audit path of leaf index in the tree of the given size
// (index < size ≤ Size()), for proof.VerifyInclusion.
func (t *Tree) InclusionProof(index, size uint64) ([][]byte, error) {
	if err := t.checkSize(size); err != nil {
		return nil, err
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("ledger: %v: %w", err, base.ErrInvalidRange)
	}
	return t.fetch(nodes)
}

// ConsistencyProof returns the RFC 6962 consistency proof between tree sizes size1 ≤ size2 ≤
// Size(), for proof.VerifyConsistency.
func (t *Tree) ConsistencyProof(size1, size2 uint64) ([][]byte, error) {
	if err := t.checkSize(size2); err != nil {
		return nil, err
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("ledger: %v: %w", err, base.ErrInvalidRange)
	}
	return t.fetch(nodes)
}

func (t *Tree) fetch(nodes proof.Nodes) ([][]byte, error) {
	hashes, err := t.readNodes(t.db, nodes.IDs)
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, Hasher{}.HashChildren)
}

// VerifyInclusion checks that leaf is entry index of the tree of the given size and root.
func VerifyInclusion(index, size uint64, leaf Hash, path [][]byte, root Hash) error {
	if err := proof.VerifyInclusion(Hasher{}, index, size, leaf[:], path, root[:]); err != nil {
		return fmt.Errorf("ledger: inclusion of %d in %d: %w", index, size, err)
	}
	return nil
}

// VerifyConsistency checks that the tree of size2 and root2 extends the tree of size1 and
// root1. Unlike the bare library (which accepts anything from size 0), size1 must be at least
// 1: there is nothing to be consistent with before a first trusted checkpoint.
func VerifyConsistency(size1, size2 uint64, root1, root2 Hash, path [][]byte) error {
	if size1 == 0 {
		return errors.New("ledger: consistency from an empty tree proves nothing; trust the first checkpoint directly")
	}
	if err := proof.VerifyConsistency(Hasher{}, size1, size2, path, root1[:], root2[:]); err != nil {
		return fmt.Errorf("ledger: consistency %d→%d: %w", size1, size2, err)
	}
	return nil
}
