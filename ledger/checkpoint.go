package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/bondkv/bondkv/internal/base"
)

// CheckpointVersion is the checkpoint encoding version.
const CheckpointVersion = 2

// checkpointDomain prefixes the signed message so a checkpoint signature cannot be replayed as
// a signature over anything else.
const checkpointDomain = "bondkv ledger checkpoint v1\x00"

// Checkpoint is a signed statement of the ledger's state after block Block. Its canonical
// encoding is
//
//	u8 version | u64 tree size | [32] root | u64 block | [32] header hash |
//	u64 owners size | [32] owners root | u64 signer | [32] public key | [64] Ed25519 signature
//
// and the signature covers checkpointDomain followed by every byte before it. OwnersSize and
// OwnersRoot are the number of rows and the RFC 6962 root of the owners table after the block
// (ownerproof.go). Version 1 had no owners fields; it is no longer accepted.
type Checkpoint struct {
	TreeSize   uint64
	Root       Hash
	Block      uint64
	HeaderHash Hash
	OwnersSize uint64
	OwnersRoot Hash
	Signer     base.NodeID
	PublicKey  ed25519.PublicKey
	Signature  []byte
}

func (c *Checkpoint) body() []byte {
	e := encoder{b: make([]byte, 0, 1+8+HashSize+8+HashSize+8+HashSize+8+ed25519.PublicKeySize+ed25519.SignatureSize)}
	e.u8(CheckpointVersion)
	e.u64(c.TreeSize)
	e.hash(c.Root)
	e.u64(c.Block)
	e.hash(c.HeaderHash)
	e.u64(c.OwnersSize)
	e.hash(c.OwnersRoot)
	e.u64(uint64(c.Signer))
	var pk [ed25519.PublicKeySize]byte
	copy(pk[:], c.PublicKey)
	e.b = append(e.b, pk[:]...)
	return e.b
}

// Encode returns the canonical encoding of a signed checkpoint.
func (c *Checkpoint) Encode() []byte {
	var sig [ed25519.SignatureSize]byte
	copy(sig[:], c.Signature)
	return append(c.body(), sig[:]...)
}

// Verify checks c's signature against its embedded public key and, if trusted is non-nil, that
// the key is the one trusted for c.Signer.
func (c *Checkpoint) Verify(trusted map[base.NodeID]ed25519.PublicKey) error {
	if trusted != nil {
		want, ok := trusted[c.Signer]
		if !ok {
			return fmt.Errorf("signer %s is not trusted", c.Signer)
		}
		if !want.Equal(c.PublicKey) {
			return fmt.Errorf("public key of %s is not the trusted one", c.Signer)
		}
	}
	msg := append([]byte(checkpointDomain), c.body()...)
	if len(c.PublicKey) != ed25519.PublicKeySize || !ed25519.Verify(c.PublicKey, msg, c.Signature) {
		return errors.New("bad signature")
	}
	return nil
}

// DecodeCheckpoint decodes a canonical checkpoint (it does not check the signature); errors
// wrap base.ErrCorruption.
func DecodeCheckpoint(b []byte) (Checkpoint, error) {
	d := decoder{b: b}
	var c Checkpoint
	if v := d.u8(); d.err == nil && v != CheckpointVersion {
		d.fail("unknown version %d", v)
	}
	c.TreeSize = d.u64()
	c.Root = d.hash()
	c.Block = d.u64()
	c.HeaderHash = d.hash()
	c.OwnersSize = d.u64()
	c.OwnersRoot = d.hash()
	c.Signer = base.NodeID(d.u64())
	c.PublicKey = bytes.Clone(d.take(ed25519.PublicKeySize))
	c.Signature = bytes.Clone(d.take(ed25519.SignatureSize))
	if err := d.finish("checkpoint"); err != nil {
		return Checkpoint{}, err
	}
	return c, nil
}

// NodeKey is a node's Ed25519 checkpoint signing key.
type NodeKey struct {
	Node base.NodeID
	priv ed25519.PrivateKey
}

// Public returns the public key.
func (k *NodeKey) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

func (k *NodeKey) sign(c *Checkpoint) {
	c.Signer = k.Node
	c.PublicKey = k.Public()
	c.Signature = ed25519.Sign(k.priv, append([]byte(checkpointDomain), c.body()...))
}

// KeyFileName is the name of the signing key file in a node's directory: the hex Ed25519 seed
// on one line, mode 0600.
const KeyFileName = "ledger-ed25519.key"

// LoadOrCreateNodeKey returns node's signing key from dir, creating it on first use. A key file
// readable or writable by group or others is refused.
func LoadOrCreateNodeKey(dir string, node base.NodeID) (*NodeKey, error) {
	if node == 0 {
		return nil, errors.New("ledger: node key: node 0 is invalid")
	}
	path := filepath.Join(dir, KeyFileName)
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("ledger: node key %s has mode %v, want 0600", path, fi.Mode().Perm())
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("ledger: node key: %w", err)
		}
		seed, err := hex.DecodeString(string(bytes.TrimSpace(raw)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("ledger: node key %s: not a hex Ed25519 seed: %w", path, base.ErrCorruption)
		}
		return &NodeKey{Node: node, priv: ed25519.NewKeyFromSeed(seed)}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("ledger: node key: %w", err)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("ledger: node key: %w", err)
	}
	if err := writeFileSync(path, []byte(hex.EncodeToString(seed)+"\n")); err != nil {
		return nil, fmt.Errorf("ledger: node key: %w", err)
	}
	return &NodeKey{Node: node, priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// writeFileSync creates path with mode 0600 atomically (temporary file, fsync, rename, fsync of
// the directory).
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
