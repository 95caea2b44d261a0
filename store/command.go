package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/bondkv/bondkv/internal/base"
)

// Op is the kind of a replicated command.
type Op uint8

// Command kinds. The numbers are part of the replicated encoding; never reuse one.
const (
	// OpPut writes Value under Key.
	OpPut Op = 1
	// OpDelete deletes Key, leaving a tombstone that carries the deletion's version.
	OpDelete Op = 2
)

func (op Op) String() string {
	switch op {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("op(%d)", uint8(op))
}

// Command is one replicated write. Key is a user key (without the d/ prefix). A delete has no
// Value.
type Command struct {
	Op    Op
	Key   []byte
	Value []byte
}

// commandsVersion is the first byte of every encoded command batch.
const commandsVersion byte = 1

// Validate checks what Apply checks before it writes a command: a known op, base.CheckKey on
// the key, base.CheckValue on the value, and no value on a delete. Proposers call it (through
// ValidateCommands) so that bad input fails before it reaches consensus.
func (c Command) Validate() error {
	switch c.Op {
	case OpPut:
		if err := base.CheckKey(c.Key); err != nil {
			return err
		}
		return base.CheckValue(c.Value)
	case OpDelete:
		if err := base.CheckKey(c.Key); err != nil {
			return err
		}
		if len(c.Value) != 0 {
			return errors.New("store: a delete carries no value")
		}
		return nil
	}
	return fmt.Errorf("store: unknown op %d", uint8(c.Op))
}

// ValidateCommands validates each command; the error names the first bad one.
func ValidateCommands(cmds []Command) error {
	for i, c := range cmds {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("command %d (%s): %w", i, c.Op, err)
		}
	}
	return nil
}

// EncodeCommands appends the encoding of cmds to dst and returns the extended slice:
//
//	version byte (1) | count uvarint | count × (op byte | keyLen uvarint | key | [valueLen uvarint | value])
//
// The value part is present for OpPut only. There is no checksum: Raft checksums its entries.
// EncodeCommands does not validate; call ValidateCommands first. A command with an unknown op
// is encoded without a value and will be rejected by DecodeCommands.
func EncodeCommands(dst []byte, cmds []Command) []byte {
	n := 1 + uvarintLen(uint64(len(cmds)))
	for _, c := range cmds {
		n += 1 + uvarintLen(uint64(len(c.Key))) + len(c.Key)
		if c.Op == OpPut {
			n += uvarintLen(uint64(len(c.Value))) + len(c.Value)
		}
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, commandsVersion)
	dst = binary.AppendUvarint(dst, uint64(len(cmds)))
	for _, c := range cmds {
		dst = append(dst, byte(c.Op))
		dst = binary.AppendUvarint(dst, uint64(len(c.Key)))
		dst = append(dst, c.Key...)
		if c.Op == OpPut {
			dst = binary.AppendUvarint(dst, uint64(len(c.Value)))
			dst = append(dst, c.Value...)
		}
	}
	return dst
}

// DecodeCommands decodes the output of EncodeCommands. The commands' Key and Value alias b.
// Input that is empty, truncated, of an unknown version, with an unknown op, a non-minimal
// length or trailing bytes is rejected with an error wrapping base.ErrCorruption; the encoding
// is canonical, so EncodeCommands(nil, cmds) reproduces b exactly. DecodeCommands never panics.
// It checks structure only: key and value limits are checked by Command.Validate.
func DecodeCommands(b []byte) ([]Command, error) {
	cmds, err := decodeCommands(nil, b)
	if err != nil {
		return nil, fmt.Errorf("store: decode commands: %w", err)
	}
	return cmds, nil
}

// decodeCommands is DecodeCommands appending to dst (so Apply can reuse a slice). On error the
// returned slice holds what was decoded before the error.
func decodeCommands(dst []Command, b []byte) ([]Command, error) {
	if len(b) == 0 {
		return dst, corruptf("empty")
	}
	if b[0] != commandsVersion {
		return dst, corruptf("unknown version %d", b[0])
	}
	d := decoder{b: b, off: 1}
	count, err := d.uvarint()
	if err != nil {
		return dst, err
	}
	// Every command takes at least two bytes (op, key length): bound count before allocating.
	if count > uint64(len(b)-d.off)/2 {
		return dst, corruptf("count %d exceeds the %d bytes left", count, len(b)-d.off)
	}
	if cap(dst)-len(dst) < int(count) {
		dst = append(make([]Command, 0, len(dst)+int(count)), dst...)
	}
	for i := uint64(0); i < count; i++ {
		op := Op(d.byte())
		if d.err != nil {
			return dst, d.err
		}
		var c Command
		switch op {
		case OpPut:
			c = Command{Op: op, Key: d.bytes()}
			c.Value = d.bytes()
		case OpDelete:
			c = Command{Op: op, Key: d.bytes()}
		default:
			return dst, corruptf("command %d: unknown op %d", i, uint8(op))
		}
		if d.err != nil {
			return dst, fmt.Errorf("command %d: %w", i, d.err)
		}
		dst = append(dst, c)
	}
	if d.off != len(b) {
		return dst, corruptf("%d trailing bytes", len(b)-d.off)
	}
	return dst, nil
}

// decoder reads canonical fields from a byte slice; the first error sticks.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.err = corruptf("truncated at byte %d", d.off)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

// uvarint reads a minimally encoded uvarint.
func (d *decoder) uvarint() (uint64, error) {
	if d.err != nil {
		return 0, d.err
	}
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.err = corruptf("truncated at byte %d", d.off)
	case n < 0:
		d.err = corruptf("uvarint overflow at byte %d", d.off)
	case n != uvarintLen(v):
		d.err = corruptf("non-minimal uvarint at byte %d", d.off)
	default:
		d.off += n
	}
	return v, d.err
}

// bytes reads a length-prefixed byte string, aliasing d.b.
func (d *decoder) bytes() []byte {
	n, err := d.uvarint()
	if err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.err = corruptf("length %d at byte %d exceeds the %d bytes left", n, d.off, len(d.b)-d.off)
		return nil
	}
	out := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return out
}

// uvarintLen is the length of the minimal uvarint encoding of v.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// corruptf returns an error wrapping base.ErrCorruption.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", base.ErrCorruption, fmt.Sprintf(format, args...))
}
