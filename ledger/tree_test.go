package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	sha256simd "github.com/minio/sha256-simd"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

func openDB(t testing.TB, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func hx(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestHasherMatchesRFC6962(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 2))
	ref := rfc6962.DefaultHasher
	h := Hasher{}
	if !bytes.Equal(h.EmptyRoot(), ref.EmptyRoot()) {
		t.Fatal("empty root differs")
	}
	for range 200 {
		b := make([]byte, r.IntN(1200))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if !bytes.Equal(h.HashLeaf(b), ref.HashLeaf(b)) {
			t.Fatalf("leaf hash differs for %d bytes", len(b))
		}
		if len(b) >= 64 && !bytes.Equal(h.HashChildren(b[:32], b[32:64]), ref.HashChildren(b[:32], b[32:64])) {
			t.Fatal("node hash differs")
		}
	}
}

// The RFC 6962 / Certificate Transparency test vectors shipped with transparency-dev/merkle
// (proof/verify_test.go): leaf indices are 1-based there.
var (
	inclusionVectors = []struct {
		leaf, size uint64
		path       [][]byte
	}{
		{1, 1, nil},
		{1, 8, [][]byte{
			hx("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
			hx("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
			hx("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")}},
		{6, 8, [][]byte{
			hx("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
			hx("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
			hx("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")}},
		{3, 3, [][]byte{
			hx("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")}},
		{2, 5, [][]byte{
			hx("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
			hx("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
			hx("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")}},
	}
	consistencyVectors = []struct {
		size1, size2 uint64
		path         [][]byte
	}{
		{1, 1, nil},
		{1, 8, [][]byte{
			hx("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
			hx("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
			hx("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")}},
		{6, 8, [][]byte{
			hx("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
			hx("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
			hx("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")}},
		{2, 5, [][]byte{
			hx("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
			hx("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")}},
		{6, 7, [][]byte{
			hx("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
			hx("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
			hx("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")}},
	}
)

func TestTreeRFC6962Vectors(t *testing.T) {
	db := openDB(t, t.TempDir())
	tr, err := OpenTree(db, []byte("T"))
	if err != nil {
		t.Fatal(err)
	}
	roots := testonly.RootHashes()
	for i, leaf := range testonly.LeafInputs() {
		if got := tr.Root(); !bytes.Equal(got[:], roots[i]) {
			t.Fatalf("root at size %d: %x, want %x", i, got, roots[i])
		}
		if err := tr.Append([]Hash{LeafHash(leaf)}); err != nil {
			t.Fatal(err)
		}
	}
	for size := range uint64(len(roots)) {
		got, err := tr.RootAt(size)
		if err != nil || !bytes.Equal(got[:], roots[size]) {
			t.Fatalf("RootAt(%d) = %x, %v; want %x", size, got, err, roots[size])
		}
	}
	for _, v := range inclusionVectors {
		got, err := tr.InclusionProof(v.leaf-1, v.size)
		if err != nil || !equalPaths(got, v.path) {
			t.Fatalf("inclusion %d/%d: %x, %v; want %x", v.leaf, v.size, got, err, v.path)
		}
		leaf := LeafHash(testonly.LeafInputs()[v.leaf-1])
		if err := VerifyInclusion(v.leaf-1, v.size, leaf, got, Hash(roots[v.size])); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range consistencyVectors {
		got, err := tr.ConsistencyProof(v.size1, v.size2)
		if err != nil || !equalPaths(got, v.path) {
			t.Fatalf("consistency %d→%d: %x, %v; want %x", v.size1, v.size2, got, err, v.path)
		}
		if err := VerifyConsistency(v.size1, v.size2, Hash(roots[v.size1]), Hash(roots[v.size2]), got); err != nil {
			t.Fatal(err)
		}
	}
	if err := VerifyConsistency(0, 8, Hash{}, Hash(roots[8]), nil); err == nil {
		t.Fatal("consistency from size 0 accepted")
	}
}

func equalPaths(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestTreeProofsManySizes grows a stored tree in random batches beside the library's in-memory
// reference tree and checks roots and proofs at every size, verified by the library.
func TestTreeProofsManySizes(t *testing.T) {
	r := rand.New(rand.NewPCG(testSeed(t), 3))
	dir := t.TempDir()
	db := openDB(t, dir)
	tr, err := OpenTree(db, []byte("T"))
	if err != nil {
		t.Fatal(err)
	}
	ref := testonly.New(rfc6962.DefaultHasher)
	const n = 300
	for tr.Size() < n {
		batch := make([]Hash, 1+r.IntN(17))
		for i := range batch {
			batch[i] = LeafHash([]byte(fmt.Sprint("leaf", tr.Size()+uint64(i))))
			ref.Append(batch[i][:])
		}
		if err := tr.Append(batch); err != nil {
			t.Fatal(err)
		}
		if got := tr.Root(); !bytes.Equal(got[:], ref.Hash()) {
			t.Fatalf("size %d: root %x, want %x", tr.Size(), got, ref.Hash())
		}
	}
	// Reopening rebuilds the same tree from the stored nodes.
	tr2, err := OpenTree(db, []byte("T"))
	if err != nil || tr2.Root() != tr.Root() || tr2.Size() != tr.Size() {
		t.Fatalf("reopened tree differs: %v", err)
	}
	size := tr.Size()
	for s := uint64(1); s <= size; s++ {
		root, err := tr.RootAt(s)
		if err != nil || !bytes.Equal(root[:], ref.HashAt(s)) {
			t.Fatalf("RootAt(%d): %v", s, err)
		}
		for range 4 {
			i := r.Uint64N(s)
			got, err := tr.InclusionProof(i, s)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := ref.InclusionProof(i, s)
			if !equalPaths(got, want) {
				t.Fatalf("inclusion %d/%d differs from reference", i, s)
			}
			leaf, _ := tr.LeafHashAt(i)
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, s, leaf[:], got, root[:]); err != nil {
				t.Fatalf("inclusion %d/%d: %v", i, s, err)
			}
			bad := Hash(root)
			bad[0] ^= 1
			if VerifyInclusion(i, s, leaf, got, bad) == nil {
				t.Fatalf("inclusion %d/%d verified against a wrong root", i, s)
			}
			s1 := 1 + r.Uint64N(s)
			cp, err := tr.ConsistencyProof(s1, s)
			if err != nil {
				t.Fatal(err)
			}
			want, _ = ref.ConsistencyProof(s1, s)
			if !equalPaths(cp, want) {
				t.Fatalf("consistency %d→%d differs from reference", s1, s)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, s1, s, cp, ref.HashAt(s1), root[:]); err != nil {
				t.Fatalf("consistency %d→%d: %v", s1, s, err)
			}
		}
	}
	if _, err := tr.InclusionProof(0, size+1); err == nil {
		t.Fatal("proof beyond the tree size accepted")
	}
}

// BenchmarkSum256 compares sha256-simd with crypto/sha256 for an RFC 6962 interior node (65
// bytes) and for leaf inputs of the sizes ledger entries have (1 + 70…300 bytes).
func BenchmarkSum256(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	sizes := []int{65}
	for _, typ := range []EntryType{TypeReplicaAdd, TypeStateAnchor, TypeBind, TypeArchiveManifest} {
		for {
			e := randEntry(r, 4)
			if e.Type() == typ {
				sizes = append(sizes, 1+len(mustEncode(b, e)))
				break
			}
		}
	}
	for _, n := range sizes {
		buf := make([]byte, n)
		b.Run(fmt.Sprintf("simd/%dB", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				sha256simd.Sum256(buf)
			}
		})
		b.Run(fmt.Sprintf("crypto/%dB", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				sha256.Sum256(buf)
			}
		})
	}
}

var bigTree struct {
	once sync.Once
	tr   *Tree
	err  error
}

// BenchmarkProof1M measures inclusion and consistency proof generation (Pebble reads) and
// verification on a stored tree of 2^20 leaves, built once per process in 1,024-leaf batches.
func BenchmarkProof1M(b *testing.B) {
	const n = 1 << 20
	bigTree.once.Do(func() {
		db, err := pebble.Open(b.TempDir(), &pebble.Options{})
		if err != nil {
			bigTree.err = err
			return
		}
		tr, err := OpenTree(db, []byte("T"))
		if err != nil {
			bigTree.err = err
			return
		}
		batch := make([]Hash, 1024)
		for tr.Size() < n {
			for i := range batch {
				batch[i] = LeafHash([]byte(fmt.Sprint("leaf ", tr.Size()+uint64(i))))
			}
			if err := tr.Append(batch); err != nil {
				bigTree.err = err
				return
			}
		}
		bigTree.tr = tr
	})
	if bigTree.err != nil {
		b.Fatal(bigTree.err)
	}
	tr := bigTree.tr
	size := tr.Size() - 3 // not a power of two: proofs with an ephemeral node
	root, err := tr.RootAt(size)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	b.Run("inclusion/prove", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tr.InclusionProof(r.Uint64N(size), size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("inclusion/verify", func(b *testing.B) {
		i := r.Uint64N(size)
		p, _ := tr.InclusionProof(i, size)
		leaf, _ := tr.LeafHashAt(i)
		b.ReportAllocs()
		for b.Loop() {
			if err := VerifyInclusion(i, size, leaf, p, root); err != nil {
				b.Fatal(err)
			}
		}
	})
	s1 := size/3 + 7
	root1, _ := tr.RootAt(s1)
	b.Run("consistency/prove", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tr.ConsistencyProof(s1, size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("consistency/verify", func(b *testing.B) {
		p, _ := tr.ConsistencyProof(s1, size)
		b.ReportAllocs()
		for b.Loop() {
			if err := VerifyConsistency(s1, size, root1, root, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
